// Package conntable is the gateway's table of local connections, split into
// a power-of-two number of shards so that lookups, inserts and sweeps for
// different users rarely share a lock.
//
// An authenticated connection lives in the shard picked by a hash of its
// user id. The shard maps each user id to the first of that user's
// connections; the others follow through a link stored in the connection
// itself (Link), so the table costs one map entry per user and no
// allocation per connection beyond it. A downstream target (uid, conn id)
// is found by walking that user's few connections and comparing conn ids,
// so a route that names another user's conn id finds nothing. A connection
// still in its handshake has no user yet; it waits in the "pending" set of
// the shard picked by its connection id, where the sweeper can time it out.
//
// Each shard counts the pushes routed through it and how often and how long
// callers waited for its lock, so operators can see whether the shard count
// fits the load (docs/TUNING.md).
//
// Concurrency: every method is safe for concurrent use. Each shard has one
// RWMutex; no method holds two shard locks at once, and no callback runs
// under a lock except the ones documented on Range.
package conntable

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MaxShards bounds the shard count.
const MaxShards = 1 << 16

// Link is the table's bookkeeping inside each connection: the next
// connection of the same user. Connections embed it and return it from
// TableLink; only the table reads or writes it, under the shard lock.
type Link[C any] struct {
	next C
}

// Conn is what the table needs to know about a connection.
type Conn[C any] interface {
	comparable
	ConnID() int64
	// UID is the authenticated user; it must not change once the
	// connection is in the table.
	UID() string
	TableLink() *Link[C]
}

// Table holds connections of type C.
type Table[C Conn[C]] struct {
	shards []shard[C]
	mask   uint64
}

type shard[C Conn[C]] struct {
	mu      sync.RWMutex
	byUID   map[string]C // first connection of each user
	pending map[int64]C
	n       int // authenticated connections

	pushes    atomic.Uint64
	contended atomic.Uint64 // lock acquisitions that had to wait
	waitNS    atomic.Int64  // total time spent waiting
	// pad keeps neighbouring shards' hot fields on different cache lines.
	_ [64]byte
}

// lock takes the write lock, timing the wait only when there is one.
func (s *shard[C]) lock() {
	if s.mu.TryLock() {
		return
	}
	t := time.Now()
	s.mu.Lock()
	s.waited(t)
}

func (s *shard[C]) rlock() {
	if s.mu.TryRLock() {
		return
	}
	t := time.Now()
	s.mu.RLock()
	s.waited(t)
}

func (s *shard[C]) waited(since time.Time) {
	s.contended.Add(1)
	s.waitNS.Add(int64(time.Since(since)))
}

// ValidShards reports whether n is an acceptable shard count.
func ValidShards(n int) error {
	if n < 1 || n > MaxShards || n&(n-1) != 0 {
		return fmt.Errorf("shard count %d: want a power of two between 1 and %d", n, MaxShards)
	}
	return nil
}

// New returns a table with n shards; n must be a power of two.
func New[C Conn[C]](n int) (*Table[C], error) {
	if err := ValidShards(n); err != nil {
		return nil, err
	}
	t := &Table[C]{shards: make([]shard[C], n), mask: uint64(n - 1)}
	for i := range t.shards {
		s := &t.shards[i]
		s.byUID = make(map[string]C)
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
	s.lock()
	s.pending[c.ConnID()] = c
	s.mu.Unlock()
}

// RemovePending forgets a handshaking connection.
func (t *Table[C]) RemovePending(id int64) {
	s := t.pendingShard(id)
	s.lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// Add inserts an authenticated connection, moving it out of the pending
// set if it was there. It returns false if the user already has a
// connection with the same conn id (or c itself is in the table).
func (t *Table[C]) Add(c C) bool {
	t.RemovePending(c.ConnID())
	uid := c.UID()
	s := &t.shards[t.ShardOf(uid)]
	s.lock()
	defer s.mu.Unlock()
	first := s.byUID[uid]
	var zero C
	for x := first; x != zero; x = x.TableLink().next {
		if x == c || x.ConnID() == c.ConnID() {
			return false
		}
	}
	c.TableLink().next = first
	s.byUID[uid] = c
	s.n++
	return true
}

// Remove deletes an authenticated connection; it reports whether it was
// there.
func (t *Table[C]) Remove(c C) bool {
	uid := c.UID()
	s := &t.shards[t.ShardOf(uid)]
	s.lock()
	defer s.mu.Unlock()
	var zero, prev C
	for x := s.byUID[uid]; x != zero; prev, x = x, x.TableLink().next {
		if x != c {
			continue
		}
		next := x.TableLink().next
		x.TableLink().next = zero
		switch {
		case prev != zero:
			prev.TableLink().next = next
		case next != zero:
			s.byUID[uid] = next
		default:
			delete(s.byUID, uid)
		}
		s.n--
		return true
	}
	return false
}

// Get returns the connection with id if it belongs to uid. A route that
// names the right conn id with another user's uid finds nothing, so a stale
// route can never reach someone else's connection.
func (t *Table[C]) Get(uid string, id int64) (C, bool) {
	return t.get(uid, id, false)
}

// Push is Get for delivering a push: a hit is counted in the shard's push
// counter.
func (t *Table[C]) Push(uid string, id int64) (C, bool) {
	return t.get(uid, id, true)
}

// PushBytes is Push for a user id held in bytes (a target read in place
// from a downstream record); it allocates nothing.
func (t *Table[C]) PushBytes(uid []byte, id int64) (C, bool) {
	s := &t.shards[hashBytes(uid)&t.mask]
	var zero C
	s.rlock()
	x := s.byUID[string(uid)] // the conversion in a map index does not allocate
	for x != zero && x.ConnID() != id {
		x = x.TableLink().next
	}
	s.mu.RUnlock()
	if x == zero {
		return zero, false
	}
	s.pushes.Add(1)
	return x, true
}

func (t *Table[C]) get(uid string, id int64, push bool) (C, bool) {
	s := &t.shards[t.ShardOf(uid)]
	var zero C
	s.rlock()
	x := s.byUID[uid]
	for x != zero && x.ConnID() != id {
		x = x.TableLink().next
	}
	s.mu.RUnlock()
	if x == zero {
		return zero, false
	}
	if push {
		s.pushes.Add(1)
	}
	return x, true
}

// ByUID appends the user's connections to dst and returns it.
func (t *Table[C]) ByUID(uid string, dst []C) []C {
	s := &t.shards[t.ShardOf(uid)]
	var zero C
	s.rlock()
	for x := s.byUID[uid]; x != zero; x = x.TableLink().next {
		dst = append(dst, x)
	}
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
	s.rlock()
	n := s.n
	s.mu.RUnlock()
	return n
}

// ShardStats are one shard's counters.
type ShardStats struct {
	Conns     int
	Pushes    uint64        // pushes routed through the shard
	Contended uint64        // lock acquisitions that waited
	Wait      time.Duration // total time waited for the lock
}

// Stats returns shard i's counters.
func (t *Table[C]) Stats(i int) ShardStats {
	s := &t.shards[i]
	return ShardStats{Conns: t.ShardLen(i), Pushes: s.pushes.Load(), Contended: s.contended.Load(),
		Wait: time.Duration(s.waitNS.Load())}
}

// PendingLen returns the number of handshaking connections.
func (t *Table[C]) PendingLen() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.rlock()
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
	var zero C
	s.rlock()
	defer s.mu.RUnlock()
	for _, c := range s.pending {
		if !fn(c) {
			return
		}
	}
	for _, first := range s.byUID {
		for x := first; x != zero; x = x.TableLink().next {
			if !fn(x) {
				return
			}
		}
	}
}

// RangePending calls fn for every handshaking connection of shard i under
// the shard's read lock, until fn returns false; see Range.
func (t *Table[C]) RangePending(i int, fn func(c C) bool) {
	s := &t.shards[i]
	s.rlock()
	defer s.mu.RUnlock()
	for _, c := range s.pending {
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

// hashBytes is hashString over bytes; both give the same hash for the same
// characters.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
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
