package coalesce

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Work added while a batch is being written is merged into the next one;
// every caller of a batch gets its outcome; Settle waits for what is
// queued; a wait whose context ends first says the work is still queued.
func TestRunner(t *testing.T) {
	var (
		mu      sync.Mutex
		written [][]int
	)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := New(func() *[]int { return new([]int) }, func(_ context.Context, w *[]int) error {
		once.Do(func() { close(entered); <-release })
		mu.Lock()
		defer mu.Unlock()
		written = append(written, *w)
		if len(*w) > 1 {
			return errors.New("second batch fails")
		}
		return nil
	}, time.Second)
	add := func(v int) func(context.Context) error { return r.Add(func(w *[]int) { *w = append(*w, v) }) }

	first := add(1)
	<-entered
	waits := []func(context.Context) error{add(2), add(3)}
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := waits[0](short); !errors.Is(err, ErrPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait before the write: %v", err)
	}
	settled := make(chan struct{})
	go func() { r.Settle(context.Background()); close(settled) }()
	select {
	case <-settled:
		t.Fatal("Settle returned with work queued")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-settled
	ctx := context.Background()
	if err := first(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range waits {
		if err := w(ctx); err == nil || err.Error() != "second batch fails" {
			t.Fatalf("merged batch outcome: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(written) != 2 || len(written[0]) != 1 || len(written[1]) != 2 || written[1][0] != 2 || written[1][1] != 3 {
		t.Fatalf("batches written: %v", written)
	}
	r.Settle(ctx) // nothing queued: returns at once
}
