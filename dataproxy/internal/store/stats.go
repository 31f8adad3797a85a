package store

import "sync/atomic"

// counters are the store's running totals, shared by its databases.
type counters struct {
	commits       atomic.Uint64
	batchedCalls  atomic.Uint64
	splits        atomic.Uint64
	retries       atomic.Uint64
	replicaReads  atomic.Uint64
	replicaMisses atomic.Uint64
	indexRows     atomic.Uint64
	dedupLookups  atomic.Uint64
	cursorFails   atomic.Uint64

	checkpoints     atomic.Uint64
	checkpointFails atomic.Uint64
}

// Stats are totals since the store was opened, for metrics and tests.
type Stats struct {
	// Commits is the number of append transactions committed, and
	// BatchedCalls the number of per-database call shares they carried:
	// BatchedCalls/Commits is the mean group-commit batch.
	Commits      uint64
	BatchedCalls uint64
	// Splits counts batches that failed on a statement and were committed
	// call by call; Retries, transactions run again after a deadlock.
	Splits  uint64
	Retries uint64
	// ReplicaReads are reads answered by a replica; ReplicaMisses, reads a
	// replica could not answer (it lagged or failed) that went to the
	// primary.
	ReplicaReads  uint64
	ReplicaMisses uint64
	// IndexRows counts conversation-list rows written (or found written)
	// because this process had not seen them yet.
	IndexRows uint64
	// DedupLookups counts transactions that met an already stored message
	// (a retransmission) and numbered their messages again without it.
	DedupLookups uint64
	// SenderCursorFailures counts appends whose senders' cursors, raised
	// after the commit (MySQL, or a list row in another database), could
	// not be raised (the messages were stored; only those unread counts
	// stay high until the sender's next message there).
	SenderCursorFailures uint64
	// Checkpoints counts the SQLite background checkpoints run (each
	// copies what the log holds that no reader still needs into the
	// database file), CheckpointFailures those that failed.
	Checkpoints        uint64
	CheckpointFailures uint64
	// WALRestarts counts the times the logs started over (were written
	// from their beginning again), as the background checkpoints found
	// them; per file in the metrics.
	WALRestarts uint64
}

// Stats returns the totals so far.
func (s *SQLStore) Stats() Stats {
	c := s.stats
	return Stats{
		Commits: c.commits.Load(), BatchedCalls: c.batchedCalls.Load(), Splits: c.splits.Load(), Retries: c.retries.Load(),
		ReplicaReads: c.replicaReads.Load(), ReplicaMisses: c.replicaMisses.Load(), IndexRows: c.indexRows.Load(), DedupLookups: c.dedupLookups.Load(),
		SenderCursorFailures: c.cursorFails.Load(),
		Checkpoints:          c.checkpoints.Load(), CheckpointFailures: c.checkpointFails.Load(), WALRestarts: s.walRestarts(),
	}
}

// walRestarts sums the files' restarts of the log.
func (s *SQLStore) walRestarts() uint64 {
	var n uint64
	for _, d := range s.dbs {
		if d.ckpt != nil {
			n += d.ckpt.restarts.Load()
		}
	}
	return n
}
