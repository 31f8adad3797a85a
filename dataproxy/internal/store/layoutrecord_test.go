package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gochat-im/gochat/pkg/ids"
)

func openReady(t *testing.T, cfg SQLiteConfig) (*SQLStore, error) {
	t.Helper()
	s, err := OpenSQLite(cfg, nil)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := s.Ready(context.Background()); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func appendOne(t *testing.T, s *SQLStore, a, b, cmid string) AppendResult {
	t.Helper()
	res, err := s.AppendMessages(context.Background(), []AppendItem{{ConvID: ids.P2P(a, b), Sender: a, Recipient: b, ClientMsgID: cmid, Body: cmid}})
	if err != nil || res[0].ErrorCode != 0 {
		t.Fatalf("append: %+v %v", res, err)
	}
	return res[0]
}

// A store refuses a configuration that disagrees with the layout recorded
// in its databases, and -check-schema (CheckSchema) says why.
func TestLayoutRecordRefusesOtherLayouts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	cfg := SQLiteConfig{Path: path, DBs: 2, Sync: "normal", Options: Options{Tables: 4}}
	s, err := openReady(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		appendOne(t, s, "alice", "bob"+string(rune('a'+i)), "m")
	}
	_ = s.Close()

	for _, other := range []SQLiteConfig{
		{Path: path, DBs: 1, Options: Options{Tables: 4}},
		{Path: path, DBs: 2, Options: Options{Tables: 2}},
		{Path: path, DBs: 3, Options: Options{Tables: 4}},
		{Path: path},
	} {
		if s, err := openReady(t, other); !errors.Is(err, ErrLayoutMismatch) {
			if s != nil {
				_ = s.Close()
			}
			t.Fatalf("%d dbs x %d tables opened a 2 x 4 store: %v", other.DBs, other.Tables, err)
		}
		other.ReadOnly = true
		ro, err := OpenSQLite(other, nil)
		if err == nil {
			st, err := ro.CheckSchema(context.Background())
			_ = ro.Close()
			if err != nil || st[0].Problem == "" || !strings.Contains(st[0].Layout, "2 database(s) x 4 table(s)") {
				t.Fatalf("CheckSchema of a mismatch: %+v %v", st, err)
			}
		}
	}
	// The right configuration still works, data intact; CheckSchema is
	// happy.
	s, err = openReady(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := appendOne(t, s, "alice", "bobc", "n"); r.Seq != 2 {
		t.Fatalf("after reopen: %+v", r)
	}
	st, err := s.CheckSchema(context.Background())
	if err != nil || len(st) != 2 || st[0].Problem != "" || st[1].Problem != "" || st[1].Version != len(s.migrations) {
		t.Fatalf("CheckSchema: %+v %v", st, err)
	}
	_ = s.Close()
}

// A shard file from another cluster, or shards in the wrong order, are
// refused.
func TestLayoutRecordRefusesForeignShard(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	cfgA := SQLiteConfig{Path: filepath.Join(dirA, "gochat.db"), DBs: 3}
	cfgB := SQLiteConfig{Path: filepath.Join(dirB, "gochat.db"), DBs: 3}
	for _, cfg := range []SQLiteConfig{cfgA, cfgB} {
		s, err := openReady(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	}
	// Swap A's shards 1 and 2.
	a1, a2 := filepath.Join(dirA, "gochat-1.db"), filepath.Join(dirA, "gochat-2.db")
	mustRename(t, a1, a1+".tmp")
	mustRename(t, a2, a1)
	mustRename(t, a1+".tmp", a2)
	if s, err := openReady(t, cfgA); !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "shard 2") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("swapped shards: %v", err)
	}
	mustRename(t, a2, a2+".tmp")
	mustRename(t, a1, a2)
	mustRename(t, a2+".tmp", a1)
	// Replace A's shard 2 with B's.
	mustRename(t, filepath.Join(dirB, "gochat-2.db"), a2)
	if s, err := openReady(t, cfgA); !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "layout") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("a shard of another cluster: %v", err)
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	for _, sfx := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(from+sfx, to+sfx); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// A database made by the binary before sharding (schema version 1, no
// layout record, plain table names) is an unsharded layout: it opens as one
// database of one table, and nothing else.
func TestLayoutRecordLegacyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	db, err := sql.Open("sqlite", fileURI(path, nil))
	if err != nil {
		t.Fatal(err)
	}
	migs, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	stmts := append([]string{createMigrationsTable(sqliteDialect)}, migs[0].render(Layout{1, 1})...)
	stmts = append(stmts,
		"INSERT INTO schema_migrations VALUES (1, 'initial', 0)",
		"INSERT INTO conversations VALUES ('p:alice:bob', 'p2p', 1, 1, 1)",
		"INSERT INTO user_conversations VALUES ('alice', 'p:alice:bob', 'p2p', 'bob', 1)",
		"INSERT INTO messages VALUES ('p:alice:bob', 1, 'alice', 'bob', 'old', '', 'legacy', 1)",
	)
	for _, st := range stmts {
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	_ = db.Close()

	for _, other := range []SQLiteConfig{{Path: path, DBs: 2}, {Path: path, Options: Options{Tables: 4}}} {
		if s, err := openReady(t, other); !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "unsharded") {
			if s != nil {
				_ = s.Close()
			}
			t.Fatalf("legacy database opened as %d x %d: %v", other.DBs, other.Tables, err)
		}
	}
	s, err := openReady(t, SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := appendOne(t, s, "alice", "bob", "new"); r.Seq != 2 {
		t.Fatalf("append to a legacy conversation: %+v", r)
	}
	if r := appendOne(t, s, "alice", "bob", "old"); r.Seq != 1 || !r.Duplicate {
		t.Fatalf("retransmission of a legacy message: %+v", r)
	}
	got, err := s.SyncMessages(context.Background(), "p:alice:bob", 0, 0)
	if err != nil || len(got.Messages) != 2 || got.Messages[0].Body != "legacy" {
		t.Fatalf("sync: %+v %v", got, err)
	}
	cur, latest, err := s.SchemaVersion(context.Background())
	if err != nil || cur != latest || latest < 2 {
		t.Fatalf("schema version %d of %d: %v", cur, latest, err)
	}
}
