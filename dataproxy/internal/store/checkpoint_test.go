package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The checkpointer's goroutine runs checkpoints on its own, and the
// writer's automatic checkpoint waits at the backstop size.
func TestCheckpointerRuns(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{CheckpointEvery: 10 * time.Millisecond})
	if got := pragma(t, s, false, "wal_autocheckpoint"); got != fmt.Sprint(backstopCheckpointPages) {
		t.Fatalf("writer's wal_autocheckpoint %s, want the backstop %d", got, backstopCheckpointPages)
	}
	d := s.dbs[0]
	if d.ckpt == nil {
		t.Fatal("no checkpointer")
	}
	appendOne(t, s, "alice", "bob", "m1")
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Checkpoints == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if f := s.Stats().CheckpointFailures; f != 0 {
		t.Fatalf("%d checkpoint failures", f)
	}
}

// A checkpoint between commits copies the whole log into the database
// file, and the next commit starts the log over: with a checkpoint after
// every 20 commits the log stays short, where without any it holds every
// commit's pages. The checkpoints count the restarts. (The interval is an hour, so only the test's own calls
// checkpoint.)
func TestCheckpointsKeepTheLogShort(t *testing.T) {
	walPeak := func(cfg SQLiteConfig, every int) (peak int64, s *SQLStore) {
		cfg.Path = filepath.Join(t.TempDir(), "gochat.db")
		s = newTestStore(t, cfg)
		for i := range 200 {
			appendOne(t, s, "alice", fmt.Sprintf("u%d", i%20), fmt.Sprintf("m%d", i))
			if fi, err := os.Stat(cfg.Path + "-wal"); err == nil {
				peak = max(peak, fi.Size())
			}
			if every > 0 && i%every == every-1 {
				if err := s.dbs[0].ckpt.checkpoint(); err != nil {
					t.Fatal(err)
				}
				if n := s.dbs[0].ckpt.behind.Load(); n != 0 {
					t.Fatalf("a checkpoint with no reader left %d frames", n)
				}
			}
		}
		return peak, s
	}
	without, _ := walPeak(SQLiteConfig{CheckpointEvery: -1}, 0)
	with, s := walPeak(SQLiteConfig{CheckpointEvery: time.Hour}, 20)
	if st := s.Stats(); st.Checkpoints != 10 || st.CheckpointFailures != 0 {
		t.Fatalf("%d checkpoints counted (%d failed), want 10", st.Checkpoints, st.CheckpointFailures)
	}
	// Each checkpoint but the last let the next append start the log over,
	// and each but the first counted the restart before it from the log's
	// header. The last found only the 20 appends since in the log; without
	// checkpoints it holds all 200, so require at most a quarter of that.
	// (The test calls checkpoint itself: the interval of an hour keeps the
	// goroutine from running one at the same time.)
	if st := s.Stats(); st.WALRestarts != 9 {
		t.Fatalf("%d restarts of the log counted, want 9", st.WALRestarts)
	}
	if n := s.dbs[0].ckpt.frames.Load(); n <= 0 || n*4096*4 > without {
		t.Fatalf("the last checkpoint found %d frames of 4 KiB in the log (%d bytes without checkpoints)", n, without)
	}
	if with*4 > without {
		t.Fatalf("log peaked at %d bytes with checkpoints, %d without", with, without)
	}
}

// The restart count comes from the checkpoint sequence in the log's
// header: only a SQLite WAL header is read, the first number is the base,
// and a number that went down (the file made anew) is the new base.
func TestWALSequenceCountsRestarts(t *testing.T) {
	header := func(magic, seq uint32) []byte {
		h := make([]byte, 32)
		binary.BigEndian.PutUint32(h, magic)
		binary.BigEndian.PutUint32(h[12:], seq)
		return h
	}
	for _, tc := range []struct {
		name string
		h    []byte
		seq  uint32
		ok   bool
	}{
		{"little-endian checksums", header(0x377f0682, 7), 7, true},
		{"big-endian checksums", header(0x377f0683, 9), 9, true},
		{"not a log", header(0x12345678, 7), 0, false},
		{"short", header(0x377f0682, 7)[:15], 0, false},
	} {
		if seq, ok := walSeq(tc.h); seq != tc.seq || ok != tc.ok {
			t.Errorf("%s: walSeq = %d, %v; want %d, %v", tc.name, seq, ok, tc.seq, tc.ok)
		}
	}
	c := &checkpointer{}
	for _, step := range []struct{ seq, total uint32 }{{5, 0}, {5, 0}, {6, 1}, {9, 4}, {2, 4}, {3, 5}} {
		c.observeSeq(step.seq)
		if got := c.restarts.Load(); got != uint64(step.total) {
			t.Fatalf("after %d: %d restarts, want %d", step.seq, got, step.total)
		}
	}
	// A missing file counts nothing and sets no base.
	c = &checkpointer{name: filepath.Join(t.TempDir(), "none.db")}
	c.countRestarts()
	if c.seenSeq || c.restarts.Load() != 0 {
		t.Fatal("a missing log was read")
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
