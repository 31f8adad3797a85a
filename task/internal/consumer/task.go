package consumer

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/offsets"
)

// partKey names a partition.
type partKey struct {
	topic string
	id    int32
}

// partition is the state of one assigned partition. A new value is made at
// every assignment, so tasks of an earlier assignment of the same partition
// can never store offsets into the new one.
type partition struct {
	key partKey
	// ctx is cancelled when the partition is revoked: attempts in progress
	// for it stop early, their results would be thrown away anyway.
	ctx    context.Context
	cancel context.CancelFunc
	// revoked is written under Dispatcher.mu and read without it for early
	// exits; decisions that matter re-check it under the lock.
	revoked atomic.Bool

	// Guarded by Dispatcher.mu.
	track   *offsets.Partition
	waiting map[*task]struct{} // tasks sleeping until their next attempt
}

// task is one consumed record on its way through the dispatcher. At any
// moment exactly one party owns it: the ready queue, a worker, a retry
// timer, or the dead-letter producer's callback. That owner alone touches
// the fields below, so they need no lock.
type task struct {
	part   *partition
	offset int64
	key    []byte
	value  []byte

	rec     *events.TaskRecord // nil when the value did not decode
	handler job.Handler        // nil for an unknown kind or a bad record
	kind    string             // job name for metrics and logs

	attempts int   // handler attempts made
	lastErr  error // why the last attempt (or the decode) failed

	dead      bool // the next step is writing to the dead-letter topic
	deadTries int  // failed dead-letter writes
	stuck     bool // counted in Dispatcher.stuck (deadTries reached StuckAfter)
	timer     *time.Timer
}
