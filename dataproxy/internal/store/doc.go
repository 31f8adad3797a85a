// Package store keeps GoChat's durable data: messages, conversations and
// users. It is the only package in GoChat that speaks SQL.
//
// # Implementations
//
// [Store] is the interface callers use. [SQLStore] implements it over two
// databases that share one code path and differ only in their dialect:
//
//   - SQLite ([OpenSQLite]), the embedded default: one file under the data
//     directory, WAL journal, one writer connection (every write transaction
//     runs on it, so writes are serialised inside the process) and a small
//     pool of query-only reader connections that never block the writer.
//     synchronous=FULL by default, so a commit survives a power cut;
//     NORMAL is faster and still survives a process crash.
//   - MySQL/MariaDB ([OpenMySQL]), InnoDB tables in utf8mb4. Ids are stored as
//     VARBINARY so that comparisons are byte-exact ("Bob" and "bob" are
//     different users), message bodies as MEDIUMBLOB.
//
// The schema is versioned: numbered SQL files per dialect (migrations/) are
// applied at start by [SQLStore.Migrate] and recorded in schema_migrations.
//
// # Sequence numbers
//
// Sequence numbers come from the database, not from Redis: AppendMessages
// reads conversations.last_seq, gives each new message last_seq+1, +2, ... and
// writes the new last_seq in the same transaction as the messages. So seqs
// are 1, 2, 3 ... per conversation with no gap and no reuse, they survive any
// crash exactly as the messages do, and losing Redis changes nothing.
//
// # Concurrency
//
// A [SQLStore] is safe for concurrent use. On MySQL, an append transaction
// first creates any missing conversation row and then locks the rows of every
// conversation it writes with SELECT ... FOR UPDATE, always in ascending
// conv_id order, so two appends to one conversation serialise and two
// batches never wait on each other in a cycle (a deadlock InnoDB reports
// anyway is retried). On SQLite the single writer connection serialises all
// appends. Either way a transaction that holds seq N commits after the one
// holding N-1, so no reader can see N before N-1. Reads need no lock:
// SyncMessages reads last_seq first and then only messages up to it, which
// are all committed.
//
// # Toward sharding
//
// Every message and conversation operation is keyed by one conversation (an
// AppendMessages batch is processed conversation by conversation), and a
// user's conversation list is keyed by user. A later router can therefore
// split the data over D databases x T tables by conversation (and the user
// list by user) and implement [Store] itself without changing callers. Such a
// router can keep a batch all-or-none only within each shard; that is enough
// for the delivery contract, which needs order and dedup per conversation.
package store
