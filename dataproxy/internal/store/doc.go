// Package store keeps GoChat's durable data: messages, conversations, the
// conversation list of each user (with the user's read and delivered
// cursors), groups and their members, and users. It is the only package in
// GoChat that speaks SQL. docs/DATAPROXY.md is the operator's guide to what
// follows.
//
// # Implementations
//
// [Store] is the interface callers use. [SQLStore] implements it over one or
// more databases that share one code path and differ only in their dialect:
//
//   - SQLite ([OpenSQLite]), the embedded default: files under the data
//     directory, WAL journal, one writer connection per file (every write
//     transaction of that file runs on it) and a small pool of query-only
//     reader connections that never block the writer. synchronous=FULL by
//     default, so a commit survives a power cut; NORMAL is faster and still
//     survives a process crash.
//   - MySQL/MariaDB ([OpenMySQL]), InnoDB tables in utf8mb4. Ids are stored as
//     VARBINARY so that comparisons are byte-exact ("Bob" and "bob" are
//     different users), message bodies as MEDIUMBLOB. Optional read replicas
//     per database.
//
// # Layout
//
// The tables that grow with traffic — messages, conversations (one row per
// conversation holding last_seq), user_conversations (each user's list),
// chat_groups and group_members — exist in D databases x T tables
// ([Layout]); users live in database 0. [Layout.Locate] is the one router:
// a conversation's messages and its conversations row are placed by the
// conversation id, and so are a group's rows (by "g:<id>"), so they always
// share a database and the sequence transaction, which also checks group
// membership, stays local; a user's list rows are placed by the user id, so
// a list is read from one place. The layout is
// recorded in every database when it is created (shard_layout) and checked
// at every start: a store refuses a configuration that disagrees, a shard
// given in the wrong order, or a database of another cluster. One database of
// one table keeps the plain table names, so an unsharded database of an
// earlier version is that layout.
//
// The schema is versioned: numbered SQL files per dialect (migrations/) are
// applied to every database at start by [SQLStore.Migrate] and recorded in
// schema_migrations; [SQLStore.CheckSchema] reports each database without
// changing anything.
//
// # Sequence numbers
//
// Sequence numbers come from the database, never from Redis: an append reads
// the conversation's last_seq under a row lock, gives each new message
// last_seq+1, +2, ... and writes the new last_seq in the same transaction as
// the messages. So seqs are 1, 2, 3 ... per conversation with no gap and no
// reuse, they survive any crash exactly as the messages do, and losing Redis
// changes nothing. A retransmission (same conversation, sender and client
// message id) is found by a unique key and answered with the original seq.
//
// # Groups, recalls, cursors
//
// A group message is stored only if the group exists, is not dissolved and
// has the sender as a member, judged in the append transaction after the
// group's conversation row is locked; every membership change locks that
// row too (groups.go). A recall (AppendItem.RecallSeq) is judged the same
// way against the message it names, marks it recalled (emptying its body)
// and is stored as an event message pointing at it (appendcheck.go). The
// conversation-list rows of groups are hints, checked against
// group_members on every read (list.go). Cursors live in the list rows and
// only grow (cursors.go); an append raises its sender's cursors to the seq
// it stored (append.go, senderCursors).
//
// # Group commit
//
// Appends go through a committer per database (groupcommit.go): calls that
// arrive while a transaction runs are combined into the next one, written
// with multi-row statements, and committed together, each keeping its own
// all-or-nothing result. A call whose messages live in several databases is
// all-or-nothing per database only; if one database fails the call returns
// an error and its retry returns what the others stored as duplicates. On
// SQLite the committer also writes the cursor updates queued meanwhile
// (UpdateCursors, and senders' own cursors) in the same transaction, and
// runs the append's statements prepared once per power-of-two size (db.go,
// shardDB.writes).
//
// # Concurrency
//
// A [SQLStore] is safe for concurrent use. Lock order inside an append
// transaction: conversation-list rows (sorted), then per table, tables in
// ascending order, the existing conversation rows in ascending conv_id and
// after them the newly created ones, all before any message is written
// (group and member rows are only read, under those locks). A group change
// locks the group's conversation row first and writes group rows only;
// list rows are written in transactions of their own, and cursor updates
// touch list rows only, sorted (on MySQL in transactions of their own, also
// the senders' cursors an append raises after its commit; on SQLite, with
// its one writer connection, order does not matter): no transaction waits
// for another in a cycle, except the rare InnoDB deadlock, which is
// retried. Two
// appends to one conversation therefore serialise on its row; batches that
// only touch existing conversations never wait on each other in a cycle,
// and the rare deadlock of two batches creating conversations at once is
// reported by InnoDB and the batch run again. No transaction spans two databases, and a
// committer never waits for another. A transaction that holds seq N commits
// after the one holding N-1, so no reader can see N before N-1. Reads take
// no lock: SyncMessages reads last_seq first and then only messages up to
// it, which are all committed.
//
// Replicas serve reads that may lag (conversation lists, user lookups) and
// sync pages they can prove complete; everything else reads the primary
// (see [SQLStore.SyncMessages]).
package store
