package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/gochat-im/gochat/pkg/svc/svctest"
)

func TestMain(m *testing.M) {
	svctest.MainIfChild("gateway", main)
	os.Exit(m.Run())
}

// runMain runs main in a child process (svctest.RunMain).
var runMain = svctest.RunMain

// A start-up failure goes through the structured logger, like task's and
// dataproxy's, with status 1; only a logger that cannot be built, or a bad
// setting found while parsing, is plain text on stderr with status 2.
func TestStartupErrors(t *testing.T) {
	// No token secret: refused by app.New before anything is contacted.
	code, out, _ := runMain(t, nil, "-log-format", "json", "-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1")
	var rec struct{ Level, Msg, Err, Svc string }
	if err := json.Unmarshal([]byte(lastLine(out)), &rec); err != nil {
		t.Fatalf("exit %d; the last line of stderr is not a JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "gateway failed" || rec.Svc != "gateway" ||
		rec.Err != "no token secret: set -token-secret or GOCHAT_TOKEN_SECRET" {
		t.Fatalf("exit %d, record %+v; want 1 and an ERROR \"gateway failed\" naming the missing secret\n%s", code, rec, out)
	}

	code, out, _ = runMain(t, nil, "-log-format", "yaml", "-token-secret", "s")
	if code != 2 || !strings.HasPrefix(out, "gateway: ") {
		t.Fatalf("bad -log-format: exit %d, stderr %q; want 2 and a plain \"gateway: ...\"", code, out)
	}

	code, out, _ = runMain(t, []string{"GOCHAT_HEARTBEAT=x"}, "-token-secret", "s")
	want := `environment GOCHAT_HEARTBEAT (-heartbeat): invalid value "x": want a duration such as 300ms, 30s or 1m30s (time: invalid duration "x")`
	if code != 2 || strings.TrimSpace(out) != want {
		t.Fatalf("bad GOCHAT_HEARTBEAT: exit %d, stderr %q; want 2 and %q", code, out, want)
	}
}

// lastLine is the last line of s (the gateway logs its open-file limit
// before it fails).
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
