// Package genset is a bounded set of keys with approximate LRU eviction,
// for caches of facts that are cheap to learn again ("this row exists",
// "this member was added"): losing an entry costs one more idempotent
// write, never correctness.
//
// Two generations approximate LRU: a hit in the old generation is copied
// to the new one; when the new one is full, the old one is dropped and the
// new one becomes old. So the set holds between Limit and 2×Limit keys,
// the recently used ones among them.
//
// Safe for concurrent use.
package genset

import "sync"

// Set is a two-generation set. The zero value is unusable; use New.
type Set[K comparable] struct {
	mu       sync.Mutex
	cur, old map[K]struct{}
	limit    int // entries per generation; 0 disables the set
}

// New returns a set of limit keys per generation; limit <= 0 makes a set
// that holds nothing.
func New[K comparable](limit int) *Set[K] {
	return &Set[K]{cur: map[K]struct{}{}, old: map[K]struct{}{}, limit: max(limit, 0)}
}

// Has reports whether k is in the set, and marks it recently used.
func (s *Set[K]) Has(k K) bool {
	if s.limit == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cur[k]; ok {
		return true
	}
	if _, ok := s.old[k]; ok {
		s.addLocked(k)
		return true
	}
	return false
}

// Add puts keys in the set.
func (s *Set[K]) Add(keys ...K) {
	if s.limit == 0 || len(keys) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.addLocked(k)
	}
}

func (s *Set[K]) addLocked(k K) {
	if len(s.cur) >= s.limit {
		s.old, s.cur = s.cur, make(map[K]struct{}, s.limit/4)
	}
	s.cur[k] = struct{}{}
}
