package store

import (
	"fmt"
	"strconv"
)

// Layout is how the traffic tables are split: DBs databases, each holding
// Tables copies of messages, conversations and user_conversations. The
// layout of a cluster is chosen when its databases are created and is
// recorded in each of them (table shard_layout); a store refuses to start
// with a configuration that disagrees with the record. docs/DATAPROXY.md
// describes how to change it.
type Layout struct {
	DBs    int
	Tables int
}

// Limits of a layout.
const (
	MaxShardDBs    = 256
	MaxShardTables = 256
)

// HashName names the hash Locate uses; it is recorded with the layout so
// that a binary with another hash can never read a cluster laid out by this
// one.
const HashName = "fnv1a64-fmix64"

func (l Layout) withDefaults() Layout {
	if l.DBs == 0 {
		l.DBs = 1
	}
	if l.Tables == 0 {
		l.Tables = 1
	}
	return l
}

// Validate checks the bounds.
func (l Layout) Validate() error {
	if l.DBs < 1 || l.DBs > MaxShardDBs {
		return fmt.Errorf("store: %d shard databases: want 1..%d", l.DBs, MaxShardDBs)
	}
	if l.Tables < 1 || l.Tables > MaxShardTables {
		return fmt.Errorf("store: %d tables per database: want 1..%d", l.Tables, MaxShardTables)
	}
	return nil
}

func (l Layout) String() string { return fmt.Sprintf("%d database(s) x %d table(s)", l.DBs, l.Tables) }

// Locate is the one router of the store: it maps a conversation id (for
// messages and conversations) or a user id (for a user's conversation list)
// to a database and a table within it:
//
//	h     = fmix64(FNV-1a 64-bit hash of the id's bytes)
//	db    = h mod DBs
//	table = (h div DBs) mod Tables
//
// The result depends only on the id and the layout, never on the process or
// the data, so every dataproxy instance agrees. The formula is part of the
// stored data's format: changing it, or the layout, moves every id and needs
// the migration described in docs/DATAPROXY.md. fmix64 is the finaliser of
// MurmurHash3: FNV-1a alone spreads similar ids badly over its low bits (the
// lowest is the parity of the bytes), which a modulus by a small number
// would expose.
func (l Layout) Locate(id string) (db, table int) {
	h := fmix64(fnv1a64(id))
	d := uint64(l.DBs)
	return int(h % d), int((h / d) % uint64(l.Tables))
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

func fnv1a64(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// tableSuffix is what the table names of table t end with: nothing in a
// layout of one table per database (so an unsharded database keeps the
// plain names messages, conversations, user_conversations), "_<t>"
// otherwise.
func (l Layout) tableSuffix(t int) string {
	if l.Tables == 1 {
		return ""
	}
	return "_" + strconv.Itoa(t)
}
