package workpool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunsEverything(t *testing.T) {
	p := New(4, 0)
	var n atomic.Int64
	for i := 0; i < 1000; i++ {
		if !p.Submit(Func(func() { n.Add(1) })) {
			t.Fatal("submit refused")
		}
	}
	p.Close()
	if n.Load() != 1000 {
		t.Fatalf("ran %d of 1000", n.Load())
	}
	if p.Submit(Func(func() {})) {
		t.Fatal("submit after close accepted")
	}
}

func TestBoundedQueue(t *testing.T) {
	p := New(1, 2)
	release := make(chan struct{})
	started := make(chan struct{})
	p.Submit(Func(func() { close(started); <-release }))
	<-started
	if !p.Submit(Func(func() {})) || !p.Submit(Func(func() {})) {
		t.Fatal("queue refused below its limit")
	}
	if p.Submit(Func(func() {})) {
		t.Fatal("queue accepted past its limit")
	}
	close(release)
	p.Close()
}

// A task blocked in one worker must not hold up the next task while the
// pool may still grow.
func TestBlockedWorkerDoesNotStall(t *testing.T) {
	p := New(8, 0)
	defer p.Close()
	release := make(chan struct{})
	defer close(release)
	p.Submit(Func(func() { <-release }))
	done := make(chan struct{})
	p.Submit(Func(func() { close(done) }))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("second task waited behind a blocked one")
	}
	// Parked workers are reused: many quick tasks, few goroutines.
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(100)
	for i := 0; i < 100; i++ {
		p.Submit(Func(func() { n.Add(1); wg.Done() }))
	}
	wg.Wait()
	if n.Load() != 100 {
		t.Fatalf("ran %d", n.Load())
	}
}

// A burst of quick tasks runs on the core workers only.
func TestBurstStaysOnCore(t *testing.T) {
	p := NewPool(Config{Core: 2, Max: 64, Stall: time.Hour})
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(10000)
	for i := 0; i < 10000; i++ {
		p.Submit(Func(func() { wg.Done() }))
	}
	wg.Wait()
	if w := p.Workers(); w > 2 {
		t.Fatalf("%d workers for quick tasks, want the 2 core ones", w)
	}
}

// When every core worker is blocked, the pool grows past Core so waiting
// tasks still run.
func TestGrowsPastBlockedCore(t *testing.T) {
	p := NewPool(Config{Core: 2, Max: 8, Stall: time.Millisecond})
	defer p.Close()
	release := make(chan struct{})
	defer close(release)
	for i := 0; i < 2; i++ {
		p.Submit(Func(func() { <-release }))
	}
	done := make(chan struct{})
	p.Submit(Func(func() { close(done) }))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("task waited behind blocked core workers")
	}
	if w := p.Workers(); w < 3 || w > 8 {
		t.Fatalf("%d workers", w)
	}
}
