package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	legacyDatabase(t, path)

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
	checkLegacyData(t, s)
	cur, latest, err := s.SchemaVersion(context.Background())
	if err != nil || cur != latest || latest < 2 {
		t.Fatalf("schema version %d of %d: %v", cur, latest, err)
	}
}

// legacyDatabase writes at path what the binary before sharding made:
// schema version 1 with the plain table names, no layout record, and one
// message from alice to bob.
func legacyDatabase(t *testing.T, path string) {
	t.Helper()
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
}

// checkLegacyData checks that the conversation of legacyDatabase is intact
// and continues (once per store: it appends "new").
func checkLegacyData(t *testing.T, s *SQLStore) {
	t.Helper()
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
}

// refused asserts that cfg does not start, with ErrLayoutMismatch and an
// error that contains want.
func refused(t *testing.T, cfg SQLiteConfig, want string) {
	t.Helper()
	s, err := openReady(t, cfg)
	if !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), want) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("%d x %d: got %v, want a layout mismatch saying %q", cfg.DBs, cfg.Tables, err, want)
	}
}

// checkSchema asserts what CheckSchema, read-only with cfg, says of
// shard 0: a problem containing want ("" for none).
func checkSchema(t *testing.T, cfg SQLiteConfig, want string) {
	t.Helper()
	cfg.ReadOnly = true
	ro, err := OpenSQLite(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	st, err := ro.CheckSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if (want == "") != (st[0].Problem == "") || !strings.Contains(st[0].Problem, want) {
		t.Fatalf("CheckSchema of shard 0: %+v, want a problem saying %q", st[0], want)
	}
}

// A first start of a sharded store that stops anywhere (before the first
// migration, after any, in the middle of one) is completed by the next
// start with the same configuration: the layout is recorded before the
// first migration, so the next start neither takes the database for an
// unsharded one nor lets another configuration have it.
func TestLayoutRecordFirstStartInterrupted(t *testing.T) {
	migs, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= len(migs); v++ {
		if v == layoutVersion {
			// Its statement also creates the record's table before the
			// first migration, so stopping it would stop the start
			// before anything is recorded (the last case below).
			continue
		}
		for _, after := range []int{0, len(migs[v-1].stmts)} {
			path := filepath.Join(t.TempDir(), "gochat.db")
			cfg := SQLiteConfig{Path: path, DBs: 2, Sync: "normal", Options: Options{Tables: 2}}
			s, err := OpenSQLite(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			StopMigrationForTest(s, v, after)
			if err := s.Ready(context.Background()); err == nil {
				t.Fatalf("version %d stopped after %d statements: Ready succeeded", v, after)
			}
			_ = s.Close()
			// The record is there already: another layout is refused,
			// and -check-schema says the schema is behind, nothing else.
			other := cfg
			other.Tables = 4
			refused(t, other, "is recorded as shard 0 of 2 database(s) x 2 table(s)")
			checkSchema(t, cfg, fmt.Sprintf("schema version %d, latest %d", v-1, len(migs)))
			// The same configuration completes it.
			s, err = openReady(t, cfg)
			if err != nil {
				t.Fatalf("restart after version %d stopped after %d statements: %v", v, after, err)
			}
			appendOne(t, s, "alice", "bob", "m")
			_ = s.Close()
			checkSchema(t, cfg, "")
		}
	}

	// Stopped after shard_layout was created and before the record was
	// written: no migration is recorded, so the database is new.
	path := filepath.Join(t.TempDir(), "gochat.db")
	db, err := sql.Open("sqlite", fileURI(path, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range append([]string{createMigrationsTable(sqliteDialect)}, migs[layoutVersion-1].stmts...) {
		if _, err := db.Exec(st); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()
	s, err := openReady(t, SQLiteConfig{Path: path, DBs: 2, Sync: "normal", Options: Options{Tables: 2}})
	if err != nil {
		t.Fatalf("restart after shard_layout was created: %v", err)
	}
	_ = s.Close()
}

// A database whose first start stopped after its migrations but before its
// layout was recorded, as an older binary left it (it recorded
// the layout last), is taken by the same configuration; a configuration
// whose tables it does not have, or such a database that holds rows, is
// refused.
func TestLayoutRecordUnrecordedFirstStart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gochat.db")
	cfg := SQLiteConfig{Path: path, DBs: 2, Sync: "normal", Options: Options{Tables: 2}}
	s, err := OpenSQLite(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What the old migrate did on shard 0 up to its INSERT INTO
	// shard_layout.
	d := s.dbs[0]
	conn, err := d.w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, createMigrationsTable(d.d)); err != nil {
		t.Fatal(err)
	}
	for _, m := range s.migrations {
		if err := d.apply(ctx, conn, m); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	_ = s.Close()

	// -check-schema no longer calls it unsharded.
	checkSchema(t, cfg, "layout not recorded yet")
	// Its tables are those of 2 tables per database.
	for _, tables := range []int{1, 4} {
		other := cfg
		other.Tables = tables
		refused(t, other, "unsharded")
	}
	// A database with rows and no record is not one that never started.
	db, err := sql.Open("sqlite", fileURI(path, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("INSERT INTO users VALUES ('alice', '', 1)"); err != nil {
		t.Fatal(err)
	}
	refused(t, cfg, "table users holds rows")
	checkSchema(t, cfg, "table users holds rows")
	if _, err := db.Exec("DELETE FROM users"); err != nil {
		t.Fatal(err)
	}
	s, err = openReady(t, cfg)
	if err != nil {
		t.Fatalf("restart after an interrupted first start: %v", err)
	}
	appendOne(t, s, "alice", "bob", "m")
	_ = s.Close()
	checkSchema(t, cfg, "")
	refused(t, SQLiteConfig{Path: path, DBs: 2, Options: Options{Tables: 4}}, "is recorded as")
}

// The upgrade of a database from before sharding that stops halfway is
// completed by the next start as one database of one table, and any other
// configuration is still refused, whether the record was written (this
// binary records it right after version 2) or not (an older binary
// recorded it after the last version).
func TestLayoutRecordLegacyUpgradeInterrupted(t *testing.T) {
	migs, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= len(migs); v++ {
		path := filepath.Join(t.TempDir(), "gochat.db")
		legacyDatabase(t, path)
		cfg := SQLiteConfig{Path: path, Sync: "normal"}
		s, err := OpenSQLite(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		StopMigrationForTest(s, v, 0)
		if err := s.Ready(context.Background()); err == nil {
			t.Fatalf("version %d stopped: Ready succeeded", v)
		}
		_ = s.Close()
		want := "unsharded" // stopped before version 2: nothing recorded
		if v > layoutVersion {
			want = "is recorded as shard 0 of 1 database(s) x 1 table(s)"
		}
		refused(t, SQLiteConfig{Path: path, DBs: 2}, want)
		refused(t, SQLiteConfig{Path: path, Options: Options{Tables: 2}}, want)
		s, err = openReady(t, cfg)
		if err != nil {
			t.Fatalf("restart after the upgrade stopped at version %d: %v", v, err)
		}
		checkLegacyData(t, s)
		_ = s.Close()
		checkSchema(t, cfg, "")
	}

	// An older binary stopped after version 2, before the record.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gochat.db")
	legacyDatabase(t, path)
	s, err := OpenSQLite(SQLiteConfig{Path: path, Sync: "normal"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.dbs[0].w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.dbs[0].apply(ctx, conn, migs[layoutVersion-1]); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	_ = s.Close()
	checkSchema(t, SQLiteConfig{Path: path, Options: Options{Tables: 2}}, "it has no table conversations_0")
	refused(t, SQLiteConfig{Path: path, DBs: 2}, "table conversations holds rows")
	s, err = openReady(t, SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkLegacyData(t, s)
	_ = s.Close()
}
