package main

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/pkg/svc"
)

func parse(t *testing.T, args ...string) (settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("dataproxy", flag.ContinueOnError)
	var common svc.Common
	common.Register(fs, "")
	var s settings
	s.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s, s.validate()
}

// The command line the devstack launcher uses keeps meaning one SQLite file
// of one table under the data directory.
func TestDefaultSettings(t *testing.T) {
	s, err := parse(t, "-etcd", "127.0.0.1:1", "-admin-listen", "127.0.0.1:0",
		"-listen", "127.0.0.1:0", "-store", "sqlite", "-data-dir", "/d", "-redis-addr", "127.0.0.1:3")
	if err != nil {
		t.Fatal(err)
	}
	c := s.sqliteConfig(false)
	if c.Path != "/d/dataproxy/gochat.db" || c.DBs != 1 || c.Tables != 1 || c.Sync != "full" || c.CheckpointEvery != time.Second {
		t.Fatalf("sqlite config: %+v", c)
	}
}

// -sqlite-checkpoint 0 turns the background checkpoints off (SQLiteConfig
// takes a negative interval for that: its 0 is the default); intervals
// below 10ms and negative ones are refused.
func TestCheckpointSetting(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want time.Duration
		ok   bool
	}{{"0", -1, true}, {"10ms", 10 * time.Millisecond, true}, {"2s", 2 * time.Second, true}, {"5ms", 0, false}, {"1ns", 0, false}, {"-1s", 0, false}} {
		s, err := parse(t, "-sqlite-checkpoint", tc.arg)
		if tc.ok != (err == nil) {
			t.Errorf("-sqlite-checkpoint %s: %v", tc.arg, err)
			continue
		}
		if got := s.sqliteConfig(false).CheckpointEvery; tc.ok && got != tc.want {
			t.Errorf("-sqlite-checkpoint %s: CheckpointEvery %v, want %v", tc.arg, got, tc.want)
		}
	}
}

func TestShardSettings(t *testing.T) {
	s, err := parse(t, "-store", "mysql", "-shard-dbs", "u:p@tcp(a:3306)/g0?charset=utf8mb4,utf8; u:p@tcp(b:3306)/g1 ;",
		"-shard-tables", "4", "-shard-replicas", "1=r@tcp(rb:3306)/g1;0=r@tcp(ra:3306)/g0;1=r@tcp(rb2:3306)/g1")
	if err != nil {
		t.Fatal(err)
	}
	c := s.mysqlConfig(false)
	if len(c.DSNs) != 2 || c.DSNs[0] != "u:p@tcp(a:3306)/g0?charset=utf8mb4,utf8" || c.Tables != 4 || !c.CreateDatabase {
		t.Fatalf("mysql config: %+v", c)
	}
	if fmt.Sprint(c.Replicas) != "[[r@tcp(ra:3306)/g0] [r@tcp(rb:3306)/g1 r@tcp(rb2:3306)/g1]]" {
		t.Fatalf("replicas: %v", c.Replicas)
	}
	s, err = parse(t, "-store", "sqlite", "-shard-dbs", "3", "-shard-tables", "2", "-data-dir", "/d")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.sqliteConfig(true); c.DBs != 3 || c.Tables != 2 || !c.ReadOnly {
		t.Fatalf("sqlite config: %+v", c)
	}
	for _, bad := range [][]string{
		{"-store", "sqlite", "-shard-dbs", "u@tcp(a)/g"},
		{"-store", "sqlite", "-shard-dbs", "0"},
		{"-store", "sqlite", "-shard-replicas", "0=x"},
		{"-store", "mysql"},
		{"-store", "mysql", "-mysql-dsn", "u@tcp(a)/g", "-shard-dbs", "u@tcp(b)/g"},
		{"-store", "mysql", "-mysql-dsn", "u@tcp(a)/g", "-shard-replicas", "1=u@tcp(r)/g"},
		{"-store", "mysql", "-mysql-dsn", "u@tcp(a)/g", "-shard-replicas", "u:secret@tcp(r)/g"},
		{"-shard-tables", "0"},
		{"-group-commit-wait", "1s"},
		{"-group-commit-max", "0"},
	} {
		_, err := parse(t, bad...)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows a password: %v", err)
		}
	}
}

// Every MySQL DSN is parsed at start, as the store will, so that one that
// is not a DSN is refused at once instead of being retried as "waiting for
// mysql" until -startup-timeout; the error names the flag and the DSN with
// its password hidden.
func TestDSNSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string // "" when accepted
	}{
		{[]string{"-mysql-dsn", "gochat:secret@tcp(127.0.0.1:3306)/gochat"}, ""},
		{[]string{"-mysql-dsn", "gochat:secret@tcp(127.0.0.1:3306)/gochat?charset=utf8mb4&parseTime=true"}, ""},
		{[]string{"-mysql-dsn", "not a dsn"},
			`-mysql-dsn "not a dsn": invalid DSN: missing the slash separating the database name`},
		{[]string{"-mysql-dsn", "gochat:secret@tcp(127.0.0.1:3306)/"},
			`-mysql-dsn "gochat:***@tcp(127.0.0.1:3306)/": no database name (want user:password@tcp(host:port)/database)`},
		{[]string{"-mysql-dsn", "gochat:secret@tcp(127.0.0.1:3306/gochat"},
			`-mysql-dsn "gochat:***@tcp(127.0.0.1:3306/gochat": invalid DSN: network address not terminated (missing closing brace)`},
		{[]string{"-mysql-dsn", "gochat:secret@tcp(127.0.0.1:3306)/gochat?parseTime=maybe"},
			`-mysql-dsn "gochat:***@tcp(127.0.0.1:3306)/gochat?parseTime=maybe": invalid bool value: maybe`},
		{[]string{"-shard-dbs", "u:secret@tcp(a:3306)/g0;u:secret@tcp(b:3306)/g1"}, ""},
		{[]string{"-shard-dbs", "u:secret@tcp(a:3306)/g0;u:secret@tcp(b:3306)"},
			`-shard-dbs shard 1 "u:***@tcp(b:3306)": invalid DSN: missing the slash separating the database name`},
		{[]string{"-shard-dbs", "u:secret@tcp(a:3306)/g0;u:other@tcp(a)/g0"},
			`-shard-dbs: shards 0 and 1 are the same database a:3306/g0`},
		{[]string{"-mysql-dsn", "u:secret@tcp(a:3306)/g", "-shard-replicas", "0=r:secret@tcp(ra:3306)/g"}, ""},
		{[]string{"-mysql-dsn", "u:secret@tcp(a:3306)/g", "-shard-replicas", "0=r:secret@tcp(ra:3306)"},
			`-shard-replicas entry "0=r:***@tcp(ra:3306)": invalid DSN: missing the slash separating the database name`},
	} {
		_, err := parse(t, append([]string{"-store", "mysql"}, tc.args...)...)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q refused: %v", tc.args, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows a password: %v", err)
		}
	}
	// A sqlite store takes no DSN, and none is parsed.
	if _, err := parse(t, "-store", "sqlite", "-data-dir", t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
