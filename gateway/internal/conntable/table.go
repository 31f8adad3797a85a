// Package conntable is the gateway's table of local connections, split into
// a power-of-two number of shards so that lookups, inserts and sweeps for
// different users rarely share a lock.
//
// An authenticated connection lives in the shard picked by a hash of its
// user id, indexed there by connection id and by user id, so a downstream
// target (uid, conn id) costs one shard lookup and a push to every device
// of a user one more. A connection still in its handshake has no user yet;
// it waits in the "pending" set of the shard picked by its connection id,
// where the sweeper can time it out.
//
// Concurrency: every method is safe for concurrent use. Each shard has one
// RWMutex; no method holds two shard locks at once, and no callback runs
// under a lock except the ones documented on Range.
package conntable

import (
	"fmt"
	"sync"
)

// MaxShards bounds the shard count.
const MaxShards = 1 << 16

// Conn is what the table needs to know about a connection.
type Conn interface {
	ConnID() int64
	// UID is the authenticated user; it must not change once the
	// connection is in the table.
	UID() string
}

// Table holds connections of type C.
type Table[C Conn] struct {
	shards []shard[C]
	mask   uint64
}

type shard[C Conn] struct {
	mu      sync.RWMutex
	conns   map[int64]C
	byUID   map[string][]C
	pending map[int64]C
	// pad keeps neighbouring shards' locks on different cache lines.
	_ [64]byte
}

// ValidShards reports whether n is an acceptable shard count.
func ValidShards(n int) error {
	if n < 1 || n > MaxShards || n&(n-1) != 0 {
		return fmt.Errorf("shard count %d: want a power of two between 1 and %d", n, MaxShards)
	}
	return nil
}

// New returns a table with n shards; n must be a power of two.
func New[C Conn](n int) (*Table[C], error) {
	if err := ValidShards(n); err != nil {
		return nil, err
	}
	t := &Table[C]{shards: make([]shard[C], n), mask: uint64(n - 1)}
	for i := range t.shards {
		s := &t.shards[i]
		s.conns = make(map[int64]C)
		s.byUID = make(map[string][]C)
		s.pending = make(map[int64]C)
	}
	return t, nil
}

// Shards returns the shard count.
func (t *Table[C]) Shards() int { return len(t.shards) }

// ShardOf returns the shard index of a user.
func (t *Table[C]) ShardOf(uid string) int { return int(hashString(uid) & t.mask) }

func (t *Table[C]) pendingShard(id int64) *shard[C] {
	return &t.shards[mix64(uint64(id))&t.mask]
}

// AddPending records a connection that is still handshaking.
func (t *Table[C]) AddPending(c C) {
	s := t.pendingShard(c.ConnID())
	s.mu.Lock()
	s.pending[c.ConnID()] = c
	s.mu.Unlock()
}

// RemovePending forgets a handshaking connection.
func (t *Table[C]) RemovePending(id int64) {
	s := t.pendingShard(id)
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// Add inserts an authenticated connection, moving it out of the pending
// set if it was there. It returns false if the conn id is already present.
func (t *Table[C]) Add(c C) bool {
	t.RemovePending(c.ConnID())
	s := &t.shards[t.ShardOf(c.UID())]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.conns[c.ConnID()]; dup {
		return false
	}
	s.conns[c.ConnID()] = c
	s.byUID[c.UID()] = append(s.byUID[c.UID()], c)
	return true
}

// Remove deletes an authenticated connection; it reports whether it was
// there.
func (t *Table[C]) Remove(c C) bool {
	s := &t.shards[t.ShardOf(c.UID())]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c.ConnID()]; !ok {
		return false
	}
	delete(s.conns, c.ConnID())
	list := s.byUID[c.UID()]
	for i, x := range list {
		if x.ConnID() == c.ConnID() {
			last := len(list) - 1
			list[i] = list[last]
			var zero C
			list[last] = zero
			list = list[:last]
			break
		}
	}
	if len(list) == 0 {
		delete(s.byUID, c.UID())
	} else {
		s.byUID[c.UID()] = list
	}
	return true
}

// Get returns the connection with id if it belongs to uid. A route that
// names the right conn id with another user's uid finds nothing, so a stale
// route can never reach someone else's connection.
func (t *Table[C]) Get(uid string, id int64) (C, bool) {
	s := &t.shards[t.ShardOf(uid)]
	s.mu.RLock()
	c, ok := s.conns[id]
	s.mu.RUnlock()
	if !ok || c.UID() != uid {
		var zero C
		return zero, false
	}
	return c, true
}

// ByUID appends the user's connections to dst and returns it.
func (t *Table[C]) ByUID(uid string, dst []C) []C {
	s := &t.shards[t.ShardOf(uid)]
	s.mu.RLock()
	dst = append(dst, s.byUID[uid]...)
	s.mu.RUnlock()
	return dst
}

// Len returns the number of authenticated connections.
func (t *Table[C]) Len() int {
	n := 0
	for i := range t.shards {
		n += t.ShardLen(i)
	}
	return n
}

// ShardLen returns the authenticated connections in shard i.
func (t *Table[C]) ShardLen(i int) int {
	s := &t.shards[i]
	s.mu.RLock()
	n := len(s.conns)
	s.mu.RUnlock()
	return n
}

// PendingLen returns the number of handshaking connections.
func (t *Table[C]) PendingLen() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.pending)
		s.mu.RUnlock()
	}
	return n
}

// Range calls fn for every connection of shard i, pending ones included,
// under the shard's read lock, until fn returns false. fn must be quick and
// must not call back into the table.
func (t *Table[C]) Range(i int, fn func(c C) bool) {
	s := &t.shards[i]
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.pending {
		if !fn(c) {
			return
		}
	}
	for _, c := range s.conns {
		if !fn(c) {
			return
		}
	}
}

// All returns a snapshot of every connection, pending ones included.
func (t *Table[C]) All() []C {
	var out []C
	for i := range t.shards {
		t.Range(i, func(c C) bool { out = append(out, c); return true })
	}
	return out
}

// hashString is FNV-1a; inlined so hashing a uid allocates nothing.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// mix64 spreads the bits of x (a finaliser from SplitMix64), so sequential
// conn ids and similar uids land in different shards.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
