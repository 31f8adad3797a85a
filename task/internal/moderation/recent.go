package moderation

import "sync"

// recentCap is how many judged messages a job remembers.
const recentCap = 1 << 16

// recent remembers the last cap messages ("<conv>:<seq>") the job finished
// judging, so that a message pushed again as stored (a client
// retransmitting after a lost ack, logic replaying a batch) is not judged
// twice by this instance: its MODERATE task comes again, keyed by the same
// conversation, so usually to the same instance. About 50 bytes a key. Safe
// for concurrent use.
type recent struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string // the keys in insertion order; next is the oldest once full
	next int
}

func newRecent(n int) *recent {
	return &recent{set: make(map[string]struct{}, n), ring: make([]string, 0, n)}
}

func (r *recent) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[key]
	return ok
}

func (r *recent) add(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[key]; ok {
		return
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, key)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = key
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[key] = struct{}{}
}
