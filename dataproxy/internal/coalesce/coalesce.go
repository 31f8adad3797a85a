// Package coalesce merges work that arrives while earlier work is being
// written, so that under load one write (a Redis script, a transaction)
// carries the work of many callers instead of one each.
//
// A Runner holds at most one batch being written and one batch filling up.
// Add merges a caller's work into the filling batch and starts the writer
// if none runs; the writer takes the filling batch, writes it, and repeats
// until nothing is left. Every caller of one batch gets that batch's
// outcome.
//
// Concurrency: a Runner is safe for concurrent use.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrPending is returned by a wait whose context ends before its batch is
// written: the work is still queued and is written later.
var ErrPending = errors.New("update still queued")

// Runner writes merged batches of work of type T (usually a pointer to the
// merged state), one at a time.
type Runner[T any] struct {
	fresh   func() T
	write   func(ctx context.Context, work T) error
	timeout time.Duration

	mu      sync.Mutex
	writing bool      // a writer goroutine is running
	pending *batch[T] // filling up, written next
	current *batch[T] // being written
}

type batch[T any] struct {
	work T
	// err is the outcome, set before done is closed.
	err  error
	done chan struct{}
}

// New returns a Runner: fresh makes an empty batch, write writes one
// (within timeout).
func New[T any](fresh func() T, write func(ctx context.Context, work T) error, timeout time.Duration) *Runner[T] {
	return &Runner[T]{fresh: fresh, write: write, timeout: timeout}
}

// Add merges a caller's work into the batch written next (merge runs under
// the Runner's lock, and must only update the batch) and returns the wait
// for that batch's outcome. The work is queued when Add returns, whether or
// not wait is ever called.
func (r *Runner[T]) Add(merge func(work T)) (wait func(ctx context.Context) error) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = &batch[T]{work: r.fresh(), done: make(chan struct{})}
	}
	b := r.pending
	merge(b.work)
	start := !r.writing
	r.writing = true
	r.mu.Unlock()
	if start {
		go r.run()
	}
	return func(ctx context.Context) error {
		select {
		case <-b.done:
			return b.err
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrPending, ctx.Err())
		}
	}
}

// run writes batches until none is left.
func (r *Runner[T]) run() {
	for {
		r.mu.Lock()
		b := r.pending
		r.pending, r.current = nil, b
		if b == nil {
			r.writing = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		b.err = r.write(ctx, b.work)
		cancel()
		close(b.done)
	}
}

// Settle waits until every batch queued so far is written (or has failed),
// or ctx ends.
func (r *Runner[T]) Settle(ctx context.Context) {
	r.mu.Lock()
	b := r.pending
	if b == nil {
		b = r.current
	}
	r.mu.Unlock()
	if b == nil {
		return
	}
	select {
	case <-b.done:
	case <-ctx.Done():
	}
}
