package store

import (
	"database/sql"
	"encoding/binary"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Checkpoints of the SQLite write-ahead log.
//
// In WAL mode a commit appends the pages it changed to the -wal file, and a
// checkpoint copies them back into the database file and syncs it. Left to
// SQLite, the checkpoint runs inside the commit that takes the WAL past
// wal_autocheckpoint pages, on the one writer connection: that commit, and
// every append queued behind it, waits while the pages are copied (86 ms
// for one commit at 8,000 msg/s on the benchmark machine, the largest
// single stall of a run and most of its p99; see docs/BENCHMARKS.md).
//
// So each file has a checkpointer: a goroutine with a connection of its own
// that runs a PASSIVE checkpoint at a fixed interval. A PASSIVE checkpoint
// never waits: it copies the frames no reader still needs while the writer
// goes on appending to the WAL. The writer's own automatic checkpoint stays,
// at a much larger size.
//
// SQLite writes the log from its beginning again only when a write
// transaction begins with every frame copied: when a background checkpoint
// ends while the writer is between commits. Under writes that never pause,
// some commit always lands while the checkpoint copies, so the log grows to
// the writer's size (128 MiB), where the writer checkpoints in a commit as
// before, but finds all but the frames of the last interval copied, and the
// log starts over. Forcing a restart after every background checkpoint
// (a last PASSIVE on the writer's connection, between two commits) held
// the writer each second and did not lower the latency: docs/DATAPROXY.md
// ("SQLite checkpoints") has the measurements. The metrics
// dataproxy_store_wal_frames and dataproxy_store_wal_restarts_total show
// how a deployment's log behaves.

const (
	// DefaultCheckpointEvery is SQLiteConfig.CheckpointEvery's default.
	DefaultCheckpointEvery = time.Second
	// backstopCheckpointPages is the writer's wal_autocheckpoint while
	// the checkpointer runs (128 MiB of 4 KiB pages).
	backstopCheckpointPages = 32768
	// writerCheckpointPages is the writer's wal_autocheckpoint without a
	// checkpointer: a page that many batches change is copied to the
	// database once per 32 MiB of WAL rather than after nearly every large
	// batch (SQLite's default is 1000).
	writerCheckpointPages = 8192
)

// checkpointer runs PASSIVE checkpoints of one file every interval until
// closed.
type checkpointer struct {
	db    *sql.DB // one connection, not query-only
	name  string
	every time.Duration
	log   *slog.Logger
	stats *counters
	stop  chan struct{}
	done  chan struct{}

	// behind is how many frames of the WAL the last checkpoint left
	// uncopied (readers still needed them), and frames how long the log
	// was then, for the metrics.
	behind atomic.Int64
	frames atomic.Int64
	// restarts counts the log's restarts seen (countRestarts).
	restarts atomic.Uint64
	// seq is the log's checkpoint sequence at the last checkpoint (seenSeq:
	// read once), for countRestarts; only the goroutine that checkpoints
	// touches them.
	seq     uint32
	seenSeq bool
}

func startCheckpointer(db *sql.DB, name string, every time.Duration, log *slog.Logger, stats *counters) *checkpointer {
	c := &checkpointer{db: db, name: name, every: every, log: log, stats: stats, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		switch err := c.checkpoint(); {
		case err != nil && !failing:
			// Logged once per run of failures: the writer's backstop
			// still bounds the WAL.
			c.log.Warn("sqlite: background checkpoint failed", "db", c.name, "err", err)
			failing = true
		case err == nil && failing:
			c.log.Info("sqlite: background checkpoints work again", "db", c.name)
			failing = false
		}
	}
}

// checkpoint runs one PASSIVE checkpoint, counts it and the log's restarts
// since the last, and records how long the log was and how many frames it
// had to leave.
func (c *checkpointer) checkpoint() error {
	c.countRestarts()
	var busy, walFrames, backfilled int64
	// A plain context: modernc's SQLite watches a cancellable one with a
	// goroutine per statement.
	if err := c.db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &walFrames, &backfilled); err != nil {
		c.stats.checkpointFails.Add(1)
		return err
	}
	if busy != 0 || walFrames < 0 {
		// Another checkpoint (the writer's backstop) held the lock: SQLite
		// answers (1, -1, -1) and nothing was done.
		return nil
	}
	// The gauges first: a reader that sees the count move sees them new.
	c.behind.Store(walFrames - backfilled)
	c.frames.Store(walFrames)
	c.stats.checkpoints.Add(1)
	return nil
}

// countRestarts counts the times the log started over since the last call,
// from the checkpoint sequence in the log's header (walSeq). A missing,
// short or foreign file counts nothing; the first call only reads the
// number, and a number that went down (the file was made anew) only
// becomes the new base.
func (c *checkpointer) countRestarts() {
	f, err := os.Open(c.name + "-wal")
	if err != nil {
		return
	}
	defer f.Close()
	var h [walHeaderRead]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return
	}
	if seq, ok := walSeq(h[:]); ok {
		c.observeSeq(seq)
	}
}

func (c *checkpointer) observeSeq(seq uint32) {
	if c.seenSeq && seq > c.seq {
		c.restarts.Add(uint64(seq - c.seq))
	}
	c.seq, c.seenSeq = seq, true
}

// walHeaderRead is how much of the log's header walSeq needs.
const walHeaderRead = 16

// walSeq returns the checkpoint sequence of a SQLite WAL header: bytes
// 12-15, big-endian, after the magic number (0x377f0682 or 0x377f0683, by
// the byte order of the checksums). SQLite adds one to it each time the
// log is written from its beginning again. The number is kept by the
// connection that writes the log, so it counts every restart only while
// one connection restarts the log: this store's single writer (the
// checkpointer's PASSIVE checkpoints never restart it; a RESTART or
// TRUNCATE checkpoint on another connection would start a count of its
// own).
func walSeq(h []byte) (uint32, bool) {
	if len(h) < walHeaderRead {
		return 0, false
	}
	if m := binary.BigEndian.Uint32(h); m&^1 != 0x377f0682 {
		return 0, false
	}
	return binary.BigEndian.Uint32(h[12:]), true
}

// close stops the goroutine (waiting for a checkpoint in progress) and
// closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
