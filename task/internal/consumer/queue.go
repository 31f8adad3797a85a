package consumer

import "sync"

// queue is the FIFO of tasks ready for an attempt, shared by the workers.
// It never blocks a producer: its length is bounded by the tasks in flight,
// which the consumer bounds by pausing the fetch.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []*task
	head   int
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends t; it returns false once the queue is closed.
func (q *queue) push(t *task) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, t)
	q.mu.Unlock()
	q.cond.Signal()
	return true
}

// pop waits for a task; it returns false when the queue is closed and
// empty.
func (q *queue) pop() (*task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.head == len(q.items) {
		return nil, false
	}
	t := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 1024 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return t, true
}

// close wakes every waiting worker; tasks still queued are handed out
// until the queue is empty.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
