package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/pkg/svc/svctest"
)

func TestMain(m *testing.M) {
	svctest.MainIfChild("task", main)
	os.Exit(m.Run())
}

// runMain runs main in a child process (svctest.RunMain).
var runMain = svctest.RunMain

// Loopback addresses nothing listens on: nothing here may be contacted.
var offline = []string{"-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1", "-log-format", "json"}

// A missing word list stops task at once with status 2, not after it has
// waited for Kafka; a bad webhook URL is refused through the logger
// (status 1) before Kafka is contacted either.
func TestStartupErrors(t *testing.T) {
	code, out, took := runMain(t, nil, append(append([]string{}, offline...), "-recall-secret", "r", "-moderation-words", "/nonexistent")...)
	want := "task: -moderation-words /nonexistent: open /nonexistent: no such file or directory"
	if code != 2 || strings.TrimSpace(out) != want || took > 10*time.Second {
		t.Fatalf("exit %d after %v, stderr %q; want 2 at once and %q", code, took, out, want)
	}

	code, out, took = runMain(t, nil, append(append([]string{}, offline...), "-webhook-url", "ftp://push.example")...)
	var rec struct{ Level, Msg, Err string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("exit %d; stderr is not one JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "task service failed" || !strings.HasPrefix(rec.Err, `webhook url "ftp://push.example"`) || took > 10*time.Second {
		t.Fatalf("exit %d after %v, record %+v; want 1 at once and an ERROR naming the URL", code, took, rec)
	}
}
