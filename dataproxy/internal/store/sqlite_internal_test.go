package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

func pragma(t *testing.T, s *SQLStore, reader bool, name string) string {
	t.Helper()
	db := s.dbs[0].w
	if reader {
		db = s.dbs[0].r
	}
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestSQLiteSettings(t *testing.T) {
	for _, tc := range []struct{ sync, want string }{{"", "2"}, {"full", "2"}, {"normal", "1"}} {
		path := filepath.Join(t.TempDir(), "a", "b.db")
		s, err := OpenSQLite(SQLiteConfig{Path: path, Sync: tc.sync}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := pragma(t, s, false, "journal_mode"); got != "wal" {
			t.Errorf("journal_mode %q", got)
		}
		if got := pragma(t, s, false, "synchronous"); got != tc.want {
			t.Errorf("sync %q: synchronous %s, want %s", tc.sync, got, tc.want)
		}
		if got := pragma(t, s, false, "busy_timeout"); got != "5000" {
			t.Errorf("busy_timeout %s", got)
		}
		if got := pragma(t, s, false, "temp_store"); got != "2" {
			t.Errorf("temp_store %s", got)
		}
		if got := pragma(t, s, false, "wal_autocheckpoint"); got != fmt.Sprint(backstopCheckpointPages) {
			t.Errorf("wal_autocheckpoint %s", got)
		}
		var ckSync string
		if err := s.dbs[0].ckpt.db.QueryRow("PRAGMA synchronous").Scan(&ckSync); err != nil || ckSync != tc.want {
			t.Errorf("sync %q: the checkpointer's synchronous %s (%v), want %s", tc.sync, ckSync, err, tc.want)
		}
		if got := pragma(t, s, true, "query_only"); got != "1" {
			t.Errorf("reader query_only %s", got)
		}
		if s.dbs[0].w.Stats().MaxOpenConnections != 1 {
			t.Errorf("writer pool has %d connections", s.dbs[0].w.Stats().MaxOpenConnections)
		}
		_ = s.Close()
	}
	if _, err := OpenSQLite(SQLiteConfig{Path: filepath.Join(t.TempDir(), "x.db"), Sync: "off"}, nil); err == nil {
		t.Error("sync off accepted")
	}
}

// SchemaVersion through a read-only handle, as -check-schema does it.
func TestSQLiteReadOnlySchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gochat.db")
	if _, err := OpenSQLite(SQLiteConfig{Path: path, ReadOnly: true}, nil); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}

	s, err := OpenSQLite(SQLiteConfig{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil || cur != 0 || latest != len(s.migrations) {
		t.Fatalf("empty database: %d %d %v", cur, latest, err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	ro, err := OpenSQLite(SQLiteConfig{Path: path, ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	cur, latest, err = ro.SchemaVersion(ctx)
	if err != nil || cur != latest {
		t.Fatalf("migrated database: %d %d %v", cur, latest, err)
	}
	if _, err := ro.UpsertUsers(ctx, []User{{UID: "alice"}}); err == nil {
		t.Fatal("a read-only store accepted a write")
	}
}

func TestMigrationFiles(t *testing.T) {
	sq, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	my, err := loadMigrations("mysql")
	if err != nil {
		t.Fatal(err)
	}
	if len(sq) != len(my) {
		t.Fatalf("sqlite has %d migrations, mysql %d", len(sq), len(my))
	}
	for i := range sq {
		if sq[i].name != my[i].name {
			t.Errorf("version %d: sqlite %q, mysql %q", i+1, sq[i].name, my[i].name)
		}
	}
	got := splitSQL("-- c\nCREATE TABLE a (\n  x INT -- note\n);\n\n-- d\nCREATE INDEX i ON a (x);\n")
	if len(got) != 2 || got[1] != "CREATE INDEX i ON a (x)" {
		t.Fatalf("splitSQL: %q", got)
	}
}

// On SQLite the append transaction's statements are prepared once, for
// every power of two rows up to maxPreparedRows, and an append of any size
// runs only those: after appends of 1 to 150 messages (one call each, so
// statements of many sizes), the writer connection has prepared nothing
// but them.
func TestSQLitePreparedWrites(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	d := s.dbs[0]
	if len(d.writes) == 0 {
		t.Fatal("no prepared write statements")
	}
	for _, n := range []int{1, 2, 3, 63, 64, 65, 100, 127, 500} {
		for lo := 0; lo < n; {
			hi := d.chunkEnd(d.t[0].insMsg, lo, n, nil)
			if k := hi - lo; k < 1 || k > maxPreparedRows || k&(k-1) != 0 {
				t.Fatalf("%d rows: a statement of %d", n, k)
			}
			lo = hi
		}
	}
	var prepared int
	d.testUnprepared = func(string) { prepared++ }
	ctx := context.Background()
	for n := 1; n <= 150; n += 7 {
		var items []AppendItem
		for i := range n {
			items = append(items, item(fmt.Sprintf("u%03d", i), fmt.Sprintf("v%03d", i%40), fmt.Sprint(n, "-", i)))
		}
		res, err := s.AppendMessages(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.ErrorCode != 0 || r.Seq == 0 {
				t.Fatalf("append of %d, item %d: %+v", n, i, r)
			}
		}
	}
	if prepared != 0 {
		t.Fatalf("%d statements were parsed during the appends", prepared)
	}
}
