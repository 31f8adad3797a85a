package store

import "sync"

// DefaultIndexCache is the default size of the cache of conversation-list
// rows known to exist.
const DefaultIndexCache = 200_000

// indexCache remembers which (uid, conversation) rows of user_conversations
// this process has seen committed, so that appends write a user's list row
// once per process and conversation instead of with every message. It is a
// cache in the strict sense: losing an entry (eviction, restart) only costs
// one more idempotent INSERT. Two generations approximate LRU: a lookup
// hit in the old generation is copied to the new one; when the new one is
// full the old one is dropped.
//
// Safe for concurrent use.
type indexCache struct {
	mu       sync.Mutex
	cur, old map[string]struct{}
	limit    int // entries per generation; 0 disables the cache
}

func newIndexCache(limit int) *indexCache {
	if limit < 0 {
		limit = 0
	}
	return &indexCache{cur: make(map[string]struct{}), old: make(map[string]struct{}), limit: limit}
}

func indexKey(uid, conv string) string { return uid + "\x00" + conv }

func (c *indexCache) has(key string) bool {
	if c.limit == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[key]; ok {
		return true
	}
	if _, ok := c.old[key]; ok {
		c.addLocked(key)
		return true
	}
	return false
}

func (c *indexCache) add(keys []string) {
	if c.limit == 0 || len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.addLocked(k)
	}
}

func (c *indexCache) addLocked(key string) {
	if len(c.cur) >= c.limit {
		c.old, c.cur = c.cur, make(map[string]struct{}, c.limit/4)
	}
	c.cur[key] = struct{}{}
}
