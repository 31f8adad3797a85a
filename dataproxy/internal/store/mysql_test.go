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
