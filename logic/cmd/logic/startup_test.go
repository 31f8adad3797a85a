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
	svctest.MainIfChild("logic", main)
	os.Exit(m.Run())
}

// runMain runs main in a child process (svctest.RunMain).
var runMain = svctest.RunMain

// Loopback addresses nothing listens on: nothing here may be contacted.
var offline = []string{"-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1",
	"-token-secret", "t", "-admin-secret", "a", "-log-format", "json"}

// Bad settings stop logic at once, before etcd or Kafka is contacted, with
// status 2 and the reason on stderr; a failure after the logger exists
// goes through it (status 1), as in task and dataproxy.
func TestStartupErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-workers", "0"}, "logic: -workers 0: must be more than 0"},
		{[]string{"-max-inflight", "0"}, "logic: -max-inflight 0: must be more than 0"},
		{[]string{"-max-batch", "2000"}, "logic: -max-batch 2000: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{[]string{"-rpc-timeout", "-1s"}, "logic: -rpc-timeout -1s: must not be negative (0 means 3s)"},
		{[]string{"-admin-secret", ""}, "logic: both -token-secret and -admin-secret are required"},
		{[]string{"-log-level", "loud"}, "logic: "},
	} {
		code, out, took := runMain(t, nil, append(append([]string{}, offline...), tc.args...)...)
		if code != 2 || !strings.HasPrefix(strings.TrimSpace(out), tc.want) || took > 10*time.Second {
			t.Errorf("%q: exit %d after %v, stderr %q; want 2 at once and %q", tc.args, code, took, out, tc.want)
		}
	}

	code, out, _ := runMain(t, nil, append(append([]string{}, offline...), "-kafka-config", "acks")...)
	var rec struct{ Level, Msg, Err, Svc string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("exit %d; stderr is not one JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "logic failed" || rec.Err != `kafka config "acks": want key=value` || rec.Svc != "logic" {
		t.Fatalf("exit %d, record %+v; want 1 and an ERROR \"logic failed\" with the reason", code, rec)
	}
}
