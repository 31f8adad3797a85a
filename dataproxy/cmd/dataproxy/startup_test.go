package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/pkg/svc/svctest"
)

func TestMain(m *testing.M) {
	svctest.MainIfChild("dataproxy", main)
	os.Exit(m.Run())
}

// runMain runs main in a child process (svctest.RunMain).
var runMain = svctest.RunMain

// A DSN that is not one stops dataproxy at once with status 2, instead of
// being retried until -startup-timeout.
func TestBadDSNFailsAtOnce(t *testing.T) {
	code, out, took := runMain(t, nil, "-store", "mysql", "-mysql-dsn", "not a dsn", "-startup-timeout", "1m",
		"-admin-listen", "", "-etcd", "", "-redis-addr", "127.0.0.1:1", "-listen", "127.0.0.1:0")
	want := `dataproxy: -mysql-dsn "not a dsn": invalid DSN: missing the slash separating the database name`
	if code != 2 || strings.TrimSpace(out) != want || took > 10*time.Second {
		t.Fatalf("exit %d after %v, stderr %q; want 2 at once and %q", code, took, out, want)
	}
}
