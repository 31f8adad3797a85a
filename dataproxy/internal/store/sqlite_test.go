package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/store/storetest"
)

func openSQLite(t *testing.T, cfg store.SQLiteConfig) *store.SQLStore {
	t.Helper()
	s, err := store.OpenSQLite(cfg, nil)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := s.Ready(context.Background()); err != nil {
		_ = s.Close()
		t.Fatalf("Ready: %v", err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dataproxy", "gochat.db")
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, store.SQLiteConfig{Path: path})
	})
}

// The same contracts hold with synchronous=NORMAL.
func TestSQLiteConformanceSyncNormal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, store.SQLiteConfig{Path: path, Sync: "normal", Readers: 2})
	})
}

// And sharded: two files of four tables each, with batches that wait a
// little for company.
func TestSQLiteConformanceSharded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, store.SQLiteConfig{Path: path, DBs: 2, Sync: "normal", Options: store.Options{
			Tables: 4, GroupCommit: store.GroupCommit{MaxItems: 64, MaxWait: 200 * time.Microsecond},
		}})
	})
}

// Without group commit or the conversation-list cache, every call runs on
// its own and writes its list rows again: the contracts do not change.
func TestSQLiteConformanceNoBatching(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, store.SQLiteConfig{Path: path, DBs: 3, Sync: "normal", Options: store.Options{
			Tables: 2, GroupCommit: store.GroupCommit{MaxItems: 1}, IndexCache: -1,
		}})
	})
}
