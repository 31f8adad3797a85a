package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/store/storetest"
)

// mysqlServer is the MariaDB every developer machine and CI run has.
const mysqlServer = "root@tcp(127.0.0.1:3306)/"

// testDatabase returns the DSN of a database with a random name that is
// dropped when the test ends. The database itself is created by the store
// (MySQLConfig.CreateDatabase).
func testDatabase(t *testing.T) string {
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenMySQL(ctx, store.MySQLConfig{DSN: dsn, MaxOpen: 16, MaxIdle: 8, CreateDatabase: true}, nil)
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
