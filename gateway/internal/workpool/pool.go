// Package workpool runs tasks on a bounded, elastic set of goroutines.
//
// The gateway uses two pools: writers, which drain connections' write
// queues into netpoll and may block in Flush on a slow client, and RPC
// workers, which call logic for sync and conversations so netpoll's
// goroutines never wait on the network.
//
// A pool starts up to Core workers as soon as tasks wait. Workers beyond
// Core (up to Max) start only when the running ones look blocked: tasks
// have waited for Stall without any worker taking one. So a burst of quick
// tasks (a push to 100,000 connections) runs on a few goroutines, about as
// many as there are CPUs to keep busy, while a few clients too slow to
// take their data, each holding a writer in Flush until the write timeout,
// cannot stop the others' pushes: the pool grows around them. Workers stay
// parked for reuse once started.
//
// Concurrency: all methods are safe for concurrent use.
package workpool

import (
	"sync"
	"time"
)

// Task is a unit of work. A *T implementing Run lets callers submit
// without allocating a closure.
type Task interface{ Run() }

// Func adapts a function to Task.
type Func func()

// Run calls f.
func (f Func) Run() { f() }

// Config shapes a pool.
type Config struct {
	// Core is how many workers start as soon as tasks wait; default Max.
	Core int
	// Max bounds the workers; at least 1.
	Max int
	// Queue bounds the waiting tasks (0: no limit).
	Queue int
	// Stall is how long waiting tasks may go untaken before workers beyond
	// Core start; default 10 ms, long enough that workers merely waiting
	// for a busy CPU do not look blocked.
	Stall time.Duration
}

// Pool runs tasks.
type Pool struct {
	cfg      Config
	mu       sync.Mutex
	cond     sync.Cond
	buf      []Task // ring buffer of waiting tasks
	head, n  int
	workers  int
	idle     int   // parked workers not yet signalled
	lastTake int64 // unix nanos when a worker last took a task
	watching bool  // the stall timer is armed
	watch    *time.Timer
	closed   bool
	wg       sync.WaitGroup
}

// New returns a pool of at most maxWorkers goroutines, all started as
// soon as tasks wait, holding at most maxQueue waiting tasks (0: no limit).
func New(maxWorkers, maxQueue int) *Pool {
	return NewPool(Config{Max: maxWorkers, Queue: maxQueue})
}

// NewPool returns a pool configured by cfg.
func NewPool(cfg Config) *Pool {
	cfg.Max = max(cfg.Max, 1)
	if cfg.Core <= 0 || cfg.Core > cfg.Max {
		cfg.Core = cfg.Max
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 10 * time.Millisecond
	}
	p := &Pool{cfg: cfg}
	p.cond.L = &p.mu
	return p
}

// Submit queues t. It returns false, without running t, when the queue is
// full or the pool is closed.
func (p *Pool) Submit(t Task) bool {
	p.mu.Lock()
	if p.closed || (p.cfg.Queue > 0 && p.n >= p.cfg.Queue) {
		p.mu.Unlock()
		return false
	}
	p.push(t)
	switch {
	case p.idle > 0:
		// idle counts waiters nobody has woken yet, so each queued task
		// wakes a distinct worker.
		p.idle--
		p.cond.Signal()
	case p.workers < p.cfg.Core:
		p.spawn()
	case p.workers < p.cfg.Max && !p.watching:
		// Every worker is busy: if none takes a task for a while, they
		// are blocked, and check starts more.
		p.watching = true
		if p.watch == nil {
			p.watch = time.AfterFunc(p.cfg.Stall, p.check)
		} else {
			p.watch.Reset(p.cfg.Stall)
		}
	}
	p.mu.Unlock()
	return true
}

// spawn starts a worker; p.mu is held.
func (p *Pool) spawn() {
	p.workers++
	p.wg.Add(1)
	go p.work()
}

// check runs after Stall when tasks waited on busy workers.
func (p *Pool) check() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watching = false
	if p.closed || p.n == 0 || p.idle > 0 {
		return
	}
	if time.Now().UnixNano()-p.lastTake < int64(p.cfg.Stall) {
		// Work is moving; look again later if tasks still wait.
		p.watching = true
		p.watch.Reset(p.cfg.Stall)
		return
	}
	for k := min(p.n, p.cfg.Core, p.cfg.Max-p.workers); k > 0; k-- {
		p.spawn()
	}
	if p.workers < p.cfg.Max {
		p.watching = true
		p.watch.Reset(p.cfg.Stall)
	}
}

func (p *Pool) push(t Task) {
	if p.n == len(p.buf) {
		nb := make([]Task, max(16, 2*len(p.buf)))
		for i := 0; i < p.n; i++ {
			nb[i] = p.buf[(p.head+i)%len(p.buf)]
		}
		p.buf, p.head = nb, 0
	}
	p.buf[(p.head+p.n)%len(p.buf)] = t
	p.n++
}

func (p *Pool) pop() Task {
	t := p.buf[p.head]
	p.buf[p.head] = nil
	p.head = (p.head + 1) % len(p.buf)
	p.n--
	p.lastTake = time.Now().UnixNano()
	return t
}

func (p *Pool) work() {
	defer p.wg.Done()
	p.mu.Lock()
	for {
		for p.n == 0 && !p.closed {
			p.idle++ // Submit takes it back when it wakes us
			p.cond.Wait()
		}
		if p.n == 0 && p.closed {
			p.workers--
			p.mu.Unlock()
			return
		}
		t := p.pop()
		p.mu.Unlock()
		t.Run()
		p.mu.Lock()
	}
}

// Queued returns the number of tasks waiting.
func (p *Pool) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Workers returns the number of worker goroutines started.
func (p *Pool) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers
}

// Close stops accepting tasks, lets the queued ones run and waits for the
// workers to finish.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	if p.watch != nil {
		p.watch.Stop()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
