package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The background checkpointer copies the WAL into the database file while
// the writer's own automatic checkpoint waits at the backstop size: after
// some appends, a checkpoint has run from the checkpointer, left nothing
// behind, and the writer then starts the log over (it stays short instead
// of growing to the backstop).
func TestBackgroundCheckpointCopiesTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	s := newTestStore(t, SQLiteConfig{Path: path, CheckpointEvery: 20 * time.Millisecond})
	if got := pragma(t, s, false, "wal_autocheckpoint"); got != fmt.Sprint(backstopCheckpointPages) {
		t.Fatalf("writer's wal_autocheckpoint %s, want the backstop %d", got, backstopCheckpointPages)
	}
	d := s.dbs[0]
	if d.ckpt == nil {
		t.Fatal("no checkpointer")
	}
	var walMax int64
	for i := range 200 {
		appendOne(t, s, "alice", fmt.Sprintf("u%d", i%20), fmt.Sprintf("m%d", i))
		if fi, err := os.Stat(path + "-wal"); err == nil {
			walMax = max(walMax, fi.Size())
		}
		if i%20 == 0 {
			time.Sleep(25 * time.Millisecond) // room for a checkpoint
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Checkpoints == 0 || d.ckpt.behind.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoints %d, frames left %d", s.Stats().Checkpoints, d.ckpt.behind.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f := s.Stats().CheckpointFailures; f != 0 {
		t.Fatalf("%d checkpoint failures", f)
	}
	// 200 single-message commits write several pages each; without
	// checkpoints the log would hold them all (well over 2 MiB).
	if walMax > 2<<20 {
		t.Fatalf("the log grew to %d bytes", walMax)
	}
	// Everything is in the database file: a fresh read sees it all.
	got, err := s.SyncMessages(t.Context(), item("alice", "u3", "").ConvID, 0, MaxSyncLimit)
	if err != nil || len(got.Messages) != 10 {
		t.Fatalf("sync after checkpoints: %d messages, %v", len(got.Messages), err)
	}
}

// Without a checkpointer (CheckpointEvery < 0) the writer checkpoints every
// writerCheckpointPages pages, as before; a read-only store has none.
func TestCheckpointerOffAndReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	s := newTestStore(t, SQLiteConfig{Path: path, CheckpointEvery: -1})
	if s.dbs[0].ckpt != nil {
		t.Fatal("a checkpointer with CheckpointEvery < 0")
	}
	if got := pragma(t, s, false, "wal_autocheckpoint"); got != fmt.Sprint(writerCheckpointPages) {
		t.Fatalf("writer's wal_autocheckpoint %s, want %d", got, writerCheckpointPages)
	}
	appendOne(t, s, "alice", "bob", "m1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenSQLite(SQLiteConfig{Path: path, ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.dbs[0].ckpt != nil {
		t.Fatal("a read-only store has a checkpointer")
	}
}

// Close stops the checkpointer and closes its connection (a second Close
// is harmless), with every shard's.
func TestCloseStopsCheckpointers(t *testing.T) {
	s, err := openReady(t, SQLiteConfig{Path: filepath.Join(t.TempDir(), "gochat.db"), DBs: 2, Sync: "normal", CheckpointEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var cks []*checkpointer
	for _, d := range s.dbs {
		if d.ckpt == nil {
			t.Fatalf("shard %d has no checkpointer", d.index)
		}
		cks = append(cks, d.ckpt)
	}
	appendOne(t, s, "alice", "bob", "m1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	for i, c := range cks {
		select {
		case <-c.done:
		default:
			t.Fatalf("shard %d's checkpointer still runs after Close", i)
		}
		if err := c.db.Ping(); err == nil {
			t.Fatalf("shard %d's checkpoint connection still open", i)
		}
	}
}
