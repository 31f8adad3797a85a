package store

// DefaultIndexCache is the default size of the cache of conversation-list
// rows known to exist.
const DefaultIndexCache = 200_000

// The cache of conversation-list rows known to exist (SQLStore.index, a
// genset.Set) remembers which (uid, conversation) rows of
// user_conversations this process has seen committed, so that appends
// write a user's list row once per process and conversation instead of
// with every message. Losing an entry (eviction, restart) only costs one
// more idempotent INSERT.

func indexKey(uid, conv string) string { return uid + "\x00" + conv }
