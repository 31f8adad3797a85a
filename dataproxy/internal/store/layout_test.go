package store

import (
	"fmt"
	"testing"
)

// The router's answers are part of the stored data's format: these values
// were computed independently of this code and must never change.
func TestLocateIsStable(t *testing.T) {
	if h := fnv1a64("p:alice:bob"); h != 0xe6c07d02fe0f4f98 {
		t.Fatalf("fnv1a64 = %#x", h)
	}
	if h := fmix64(fnv1a64("p:alice:bob")); h != 0x6b9ccd13ace1d62 {
		t.Fatalf("fmix64(fnv1a64) = %#x", h)
	}
	cases := []struct {
		id        string
		l         Layout
		db, table int
	}{
		{"p:alice:bob", Layout{1, 1}, 0, 0},
		{"p:alice:bob", Layout{2, 4}, 0, 1},
		{"p:alice:bob", Layout{4, 4}, 2, 0},
		{"p:alice:bob", Layout{16, 1}, 2, 0},
		{"g:team", Layout{2, 4}, 0, 1},
		{"alice", Layout{2, 4}, 0, 2},
		{"alice", Layout{4, 4}, 0, 1},
		{"alice", Layout{16, 1}, 4, 0},
		{"bob", Layout{4, 4}, 0, 0},
	}
	for _, c := range cases {
		db, table := c.l.Locate(c.id)
		if db != c.db || table != c.table {
			t.Errorf("%v.Locate(%q) = %d, %d; want %d, %d", c.l, c.id, db, table, c.db, c.table)
		}
	}
}

// Every (database, table) pair gets a share of the ids.
func TestLocateSpreads(t *testing.T) {
	l := Layout{DBs: 4, Tables: 8}
	count := make(map[[2]int]int)
	const n = 32_000
	for i := range n {
		db, table := l.Locate(fmt.Sprintf("p:user%d:user%d", i, i+1))
		count[[2]int{db, table}]++
	}
	if len(count) != l.DBs*l.Tables {
		t.Fatalf("%d of %d places used", len(count), l.DBs*l.Tables)
	}
	for p, c := range count {
		if c < n/(l.DBs*l.Tables)*3/4 {
			t.Errorf("place %v got %d of %d ids", p, c, n)
		}
	}
}

func TestLayoutNames(t *testing.T) {
	if s := (Layout{1, 1}).tableSuffix(0); s != "" {
		t.Fatalf("one table: suffix %q", s)
	}
	if s := (Layout{1, 4}).tableSuffix(3); s != "_3" {
		t.Fatalf("four tables: suffix %q", s)
	}
	m := migration{stmts: []string{"CREATE TABLE users (x INT)", "CREATE TABLE messages{{t}} (x INT)", "CREATE INDEX messages{{t}}_i ON messages{{t}} (x)"}}
	got := m.render(Layout{2, 2})
	want := []string{"CREATE TABLE users (x INT)", "CREATE TABLE messages_0 (x INT)", "CREATE TABLE messages_1 (x INT)",
		"CREATE INDEX messages_0_i ON messages_0 (x)", "CREATE INDEX messages_1_i ON messages_1 (x)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("render:\n got %q\nwant %q", got, want)
	}
	if p := SQLitePaths("/d/gochat.db", 3); fmt.Sprint(p) != "[/d/gochat.db /d/gochat-1.db /d/gochat-2.db]" {
		t.Fatalf("paths %v", p)
	}
	for _, bad := range []Layout{{0, 1}, {1, 0}, {MaxShardDBs + 1, 1}, {1, MaxShardTables + 1}} {
		if bad.Validate() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
