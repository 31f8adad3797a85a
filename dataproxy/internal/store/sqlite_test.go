package store_test

import (
	"context"
	"path/filepath"
	"testing"

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
