package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
)

// -check-schema reports every shard: missing (1), current (0), and a
// configuration that disagrees with the recorded layout (1), changing
// nothing.
func TestCheckSchema(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg, err := parse(t, "-store", "sqlite", "-data-dir", t.TempDir(), "-shard-dbs", "2", "-shard-tables", "2")
	if err != nil {
		t.Fatal(err)
	}
	if code := checkSchema(cfg, log); code != 1 {
		t.Fatalf("missing databases: exit %d, want 1", code)
	}
	st, err := store.OpenSQLite(cfg.sqliteConfig(false), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if code := checkSchema(cfg, log); code != 0 {
		t.Fatalf("current databases: exit %d, want 0", code)
	}
	other := cfg
	other.shardTables = 4
	if code := checkSchema(other, log); code != 1 {
		t.Fatalf("another layout: exit %d, want 1", code)
	}
	// Nothing was changed by the checks.
	if code := checkSchema(cfg, log); code != 0 {
		t.Fatalf("after the checks: exit %d, want 0", code)
	}
}
