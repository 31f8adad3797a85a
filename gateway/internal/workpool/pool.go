// Package workpool runs tasks on a bounded, elastic set of goroutines.
//
// The gateway uses two pools: writers, which drain connections' write
// queues into netpoll and may block in Flush on a slow client (a blocked
// writer only holds up that one client: the pool starts another goroutine
// for the next task, up to its limit), and RPC workers, which call logic for
// sync and conversations so netpoll's goroutines never wait on the network.
// Goroutines are started when tasks wait and no worker is idle, and stay
// parked for reuse.
//
// Concurrency: all methods are safe for concurrent use.
package workpool

import "sync"

// Task is a unit of work. A *T implementing Run lets callers submit
// without allocating a closure.
type Task interface{ Run() }

// Func adapts a function to Task.
type Func func()

// Run calls f.
func (f Func) Run() { f() }

// Pool runs tasks.
type Pool struct {
	mu         sync.Mutex
	cond       sync.Cond
	buf        []Task // ring buffer of waiting tasks
	head, n    int
	maxQueue   int
	maxWorkers int
	workers    int
	idle       int // parked workers not yet signalled
	closed     bool
	wg         sync.WaitGroup
}

// New returns a pool of at most maxWorkers goroutines holding at most
// maxQueue waiting tasks (0: no limit).
func New(maxWorkers, maxQueue int) *Pool {
	p := &Pool{maxWorkers: max(maxWorkers, 1), maxQueue: maxQueue}
	p.cond.L = &p.mu
	return p
}

// Submit queues t. It returns false, without running t, when the queue is
// full or the pool is closed.
func (p *Pool) Submit(t Task) bool {
	p.mu.Lock()
	if p.closed || (p.maxQueue > 0 && p.n >= p.maxQueue) {
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
	case p.workers < p.maxWorkers:
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
	p.mu.Unlock()
	return true
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

// Close stops accepting tasks, lets the queued ones run and waits for the
// workers to finish.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
