package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/store/storetest"
)

func TestMain(m *testing.M) {
	// The driver logs every connection the outage tests break.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	os.Exit(m.Run())
}

// mysqlServer is the MariaDB every developer machine and CI run has.
const mysqlServer = "root@tcp(127.0.0.1:3306)/"

// testDatabase returns the DSN of a database with a random name that is
// dropped when the test ends. The database itself is created by the store
// (MySQLConfig.CreateDatabase).
func testDatabase(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gochat_test_" + hex.EncodeToString(b[:])
	root, err := sql.Open("mysql", mysqlServer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		_ = root.Close()
		t.Fatalf("MariaDB at %s: %v", mysqlServer, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := root.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		_ = root.Close()
	})
	cfg, err := mysql.ParseDSN(mysqlServer)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	return cfg.FormatDSN()
}

func openMySQL(t *testing.T, dsn string) *store.SQLStore {
	t.Helper()
	return openMySQLCfg(t, store.MySQLConfig{DSN: dsn})
}

// openMySQLCfg opens and readies a store, with small pools and the
// databases created, unless cfg says otherwise.
func openMySQLCfg(t testing.TB, cfg store.MySQLConfig) *store.SQLStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen, cfg.MaxIdle = 8, 4
	}
	cfg.CreateDatabase = true
	s, err := store.OpenMySQL(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("OpenMySQL: %v", err)
	}
	if err := s.Ready(ctx); err != nil {
		_ = s.Close()
		t.Fatalf("Ready: %v", err)
	}
	return s
}

func TestMySQLNoDatabase(t *testing.T) {
	cfg, err := mysql.ParseDSN(mysqlServer)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg.DBName = "gochat_test_missing_" + hex.EncodeToString(b[:])
	s, err := store.OpenMySQL(context.Background(), store.MySQLConfig{DSN: cfg.FormatDSN()}, nil)
	if !errors.Is(err, store.ErrNoDatabase) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("open of a missing database: %v", err)
	}
}

func TestMySQLConformance(t *testing.T) {
	dsn := testDatabase(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openMySQL(t, dsn) })
}

// As a user with rights on its own database only, as the mysql image's
// MYSQL_USER (docker-compose.yml) or a managed database's application
// user: the store needs no server-wide privilege, even to create tables
// and run its migrations (the database exists, as the image creates it).
func TestMySQLConformanceLimitedUser(t *testing.T) {
	dsn := testDatabase(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	root, err := sql.Open("mysql", mysqlServer)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	user, pass := "gochat_u_"+hex.EncodeToString(b[:]), hex.EncodeToString(b[:])+"-pw"
	for _, q := range []string{
		"CREATE DATABASE " + cfg.DBName,
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + pass + "'",
		"GRANT ALL PRIVILEGES ON `" + cfg.DBName + "`.* TO '" + user + "'@'%'",
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _, _ = root.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	cfg.User, cfg.Passwd = user, pass
	limited := cfg.FormatDSN()
	storetest.Run(t, func(t *testing.T) store.Store { return openMySQL(t, limited) })
}

// Sharded: two databases of four tables each.
func TestMySQLConformanceSharded(t *testing.T) {
	dsns := []string{testDatabase(t), testDatabase(t)}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openMySQLCfg(t, store.MySQLConfig{DSNs: dsns, Options: store.Options{
			Tables: 4, GroupCommit: store.GroupCommit{MaxItems: 64, MaxWait: 200 * time.Microsecond},
		}})
	})
}

// Without group commit or the conversation-list cache.
func TestMySQLConformanceNoBatching(t *testing.T) {
	dsns := []string{testDatabase(t), testDatabase(t), testDatabase(t)}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openMySQLCfg(t, store.MySQLConfig{DSNs: dsns, Options: store.Options{
			Tables: 2, GroupCommit: store.GroupCommit{MaxItems: 1, Writers: 4}, IndexCache: -1,
		}})
	})
}

// Every connection runs in READ COMMITTED, the level appends are written for.
func TestMySQLSessionIsolation(t *testing.T) {
	s := openMySQL(t, testDatabase(t))
	defer s.Close()
	for _, db := range []*sql.DB{store.PrimaryForTest(s, 0)} {
		var level string
		err := db.QueryRow("SELECT @@transaction_isolation").Scan(&level)
		if err != nil {
			err = db.QueryRow("SELECT @@tx_isolation").Scan(&level)
		}
		if err != nil || level != "READ-COMMITTED" {
			t.Fatalf("isolation %q %v", level, err)
		}
	}
}

// MySQL commits DDL statement by statement, so a migration can stop
// halfway (a crash, a lost connection): its next run must get past what is
// already there. Version 3 is undone down to its first ALTER (columns added
// to one table of two, no record of the version) and the store is opened
// again.
func TestMySQLMigrationStoppedHalfway(t *testing.T) {
	dsn := testDatabase(t)
	cfg := store.MySQLConfig{DSN: dsn, Options: store.Options{Tables: 2}}
	s := openMySQLCfg(t, cfg)
	db := store.PrimaryForTest(s, 0)
	for _, q := range []string{
		"DELETE FROM schema_migrations WHERE version = 3",
		"DROP TABLE group_members_1",
		"ALTER TABLE messages_0 DROP COLUMN recalled, DROP COLUMN ref_seq",
		"ALTER TABLE messages_1 DROP COLUMN recalled, DROP COLUMN ref_seq",
		"ALTER TABLE user_conversations_1 DROP COLUMN read_seq, DROP COLUMN delivered_seq",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_ = s.Close()
	s = openMySQLCfg(t, cfg)
	defer s.Close()
	cur, latest, err := s.SchemaVersion(context.Background())
	if err != nil || cur != latest || latest < 3 {
		t.Fatalf("schema version %d of %d: %v", cur, latest, err)
	}
	for _, q := range []string{"SELECT recalled, ref_seq FROM messages_1", "SELECT read_seq FROM user_conversations_1", "SELECT uid FROM group_members_1"} {
		rows, err := store.PrimaryForTest(s, 0).Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		_ = rows.Close()
	}
}

// readyMySQL opens cfg (databases created) and runs Ready.
func readyMySQL(t *testing.T, cfg store.MySQLConfig, stop func(*store.SQLStore)) (*store.SQLStore, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.MaxOpen, cfg.MaxIdle, cfg.CreateDatabase = 8, 4, true
	s, err := store.OpenMySQL(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("OpenMySQL: %v", err)
	}
	if stop != nil {
		stop(s)
	}
	if err := s.Ready(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// checkCurrent asserts that the store starts with cfg, takes a message,
// and that CheckSchema finds nothing wrong.
func checkCurrent(t *testing.T, cfg store.MySQLConfig) {
	t.Helper()
	s, err := readyMySQL(t, cfg, nil)
	if err != nil {
		t.Fatalf("restart with the same configuration: %v", err)
	}
	defer s.Close()
	res, err := s.AppendMessages(context.Background(), []store.AppendItem{{ConvID: "p:alice:bob", Sender: "alice", Recipient: "bob", ClientMsgID: "m", Body: "m"}})
	if err != nil || res[0].ErrorCode != 0 || res[0].Seq != 1 {
		t.Fatalf("append: %+v %v", res, err)
	}
	st, err := s.CheckSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range st {
		if sh.Problem != "" {
			t.Fatalf("CheckSchema: %+v", st)
		}
	}
}

// The first start of a sharded MySQL store stops in a migration (MySQL
// commits DDL statement by statement, so what ran before the stop stays):
// the layout was recorded before the first migration, so the next start
// with the same configuration completes the schema, and another layout is
// refused. A database an older binary left migrated but without its record
// (it wrote the record last) is taken by the same configuration as long as
// it has that layout's tables and no rows.
func TestMySQLFirstStartStoppedHalfway(t *testing.T) {
	for _, stop := range []struct{ version, after int }{{1, 0}, {1, 2}, {3, 1}, {3, 3}, {3, 4}} {
		cfg := store.MySQLConfig{DSNs: []string{testDatabase(t), testDatabase(t)}, Options: store.Options{Tables: 2}}
		s, err := readyMySQL(t, cfg, func(s *store.SQLStore) { store.StopMigrationForTest(s, stop.version, stop.after) })
		if err == nil {
			_ = s.Close()
			t.Fatalf("%+v: the stopped migration succeeded", stop)
		}
		other := cfg
		other.Tables = 4
		if s, err := readyMySQL(t, other, nil); !errors.Is(err, store.ErrLayoutMismatch) {
			if s != nil {
				_ = s.Close()
			}
			t.Fatalf("%+v: another layout after the stop: %v", stop, err)
		}
		checkCurrent(t, cfg)
	}

	// The older binary's leftover: every database migrated (shard 0 with
	// version 3 half done), none recorded; shard 1 also has a row (as if
	// its record had been lost later, which is not a first start).
	cfg := store.MySQLConfig{DSNs: []string{testDatabase(t), testDatabase(t)}, Options: store.Options{Tables: 2}}
	s := openMySQLCfg(t, cfg)
	for i, qs := range [][]string{
		{"DELETE FROM shard_layout", "DELETE FROM schema_migrations WHERE version = 3", "DROP TABLE group_members_1",
			"ALTER TABLE messages_1 DROP COLUMN recalled, DROP COLUMN ref_seq"},
		{"DELETE FROM shard_layout", "INSERT INTO messages_0 (conv_id, seq, sender, client_msg_id, body, created_at_ms) VALUES ('p:a:b', 1, 'a', 'x', '', 1)"},
	} {
		for _, q := range qs {
			if _, err := store.PrimaryForTest(s, i).Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	_ = s.Close()
	other := cfg
	other.Tables = 4
	if s, err := readyMySQL(t, other, nil); !errors.Is(err, store.ErrLayoutMismatch) || !strings.Contains(err.Error(), "no table conversations_2") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("another layout: %v", err)
	}
	if s, err := readyMySQL(t, cfg, nil); !errors.Is(err, store.ErrLayoutMismatch) || !strings.Contains(err.Error(), "table messages_0 holds rows") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("a database with rows and no record: %v", err)
	}
	db, err := sql.Open("mysql", cfg.DSNs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM messages_0"); err != nil {
		t.Fatal(err)
	}
	checkCurrent(t, cfg)
}
