package store

import (
	"database/sql"
	"log/slog"
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
// at a much larger size. SQLite starts the WAL over only when a write
// transaction begins with every frame copied, which under steady writes
// does not follow a background checkpoint (the frames committed during its
// copy are left); so the WAL still grows to the writer's size, where the
// writer checkpoints in a commit as before, but finds all but the frames of
// the last interval already copied.

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
	// uncopied (readers still needed them), for the metrics.
	behind atomic.Int64
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

// checkpoint runs one PASSIVE checkpoint, counts it, and records how many
// frames it had to leave.
func (c *checkpointer) checkpoint() error {
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
	c.stats.checkpoints.Add(1)
	c.behind.Store(walFrames - backfilled)
	return nil
}

// close stops the goroutine (waiting for a checkpoint in progress) and
// closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
