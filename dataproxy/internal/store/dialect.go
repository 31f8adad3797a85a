package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
)

// dialect holds the SQL that differs between SQLite and MySQL. Everything
// else in the store is plain SQL both accept.
type dialect struct {
	name string

	// txOptions for write transactions.
	txOptions *sql.TxOptions
	// duplicate reports an error of a statement refused by a unique key.
	duplicate func(error) bool
	// lockSuffix turns a SELECT into a locking read ("" on SQLite, where the
	// single writer connection already excludes every other writer).
	lockSuffix string
	// keepTail ends a multi-row INSERT so that a row whose key exists is
	// left as it was. On MySQL this is ON DUPLICATE KEY UPDATE with a no-op
	// assignment rather than INSERT IGNORE: it locks a duplicate at once (no
	// shared-then-exclusive upgrade that could deadlock) and does not turn
	// data errors into warnings. col is a key column.
	keepTail func(col string) string
	// saveSeqs is the statement that writes the new last_seq and
	// updated_at_ms of many conversations, given the conversations table:
	// (conv_id, last_seq, updated_at_ms) per row. It is an UPDATE from a
	// derived table rather than an INSERT ... ON DUPLICATE KEY UPDATE: the
	// rows are already locked, and the duplicate-key check of the latter
	// takes gap locks (even in READ COMMITTED) that make two batches wait on
	// each other for conversations they do not share.
	saveSeqs func(table string) rowSQL

	hasTable   string // one parameter: the table name; returns a count
	listTables string // the names of the database's tables, one per row

	// uninterrupted: statements of a write transaction run with a context
	// that cannot be cancelled (the transaction itself still is, by its
	// own context). modernc's SQLite driver starts a goroutine per
	// statement to interrupt it when a cancellable context ends, which
	// costs more than the statements of an append; a local SQLite write is
	// short and bounded by the busy timeout anyway.
	uninterrupted bool
	// cursorsInCommit: cursor updates (UpdateCursors, and the senders'
	// own cursors an append raises) are written by the group committer in
	// the transaction of an append batch, instead of in their own
	// transaction. On SQLite, where every write queues for the one writer
	// connection, an update then costs a statement instead of a commit
	// (with its fsync). MySQL writes them on their own: its transactions
	// run side by side, and an append that locked list rows (to add them)
	// before its conversation rows and others (to raise cursors) after
	// them could deadlock with another transaction.
	cursorsInCommit bool
	// prepareWrites: the statements of the append transaction are prepared
	// once (see shardDB.writes). SQLite parses and plans every statement
	// text it is given in the process, a sizable share of an append's
	// CPU; a MySQL server keeps no plan for a text either, but parsing is
	// the server's work there, and server-side statements would cost a
	// round trip each.
	prepareWrites bool
	// conflictRollsBack: a refused message INSERT rolls the whole append
	// transaction back (SQLite's INSERT OR ROLLBACK), which then runs
	// again; otherwise the INSERT is undone to a savepoint (MySQL).
	//
	// On SQLite, a multi-row statement that may abort halfway, and every
	// statement under a savepoint, copies each page it changes into a
	// statement journal first. That journal lives in memory, and
	// modernc's allocator hands its pages back to the kernel when it is
	// freed (madvise) and faults them in again on the next transaction:
	// at 8,000 msg/s those two were more than half of dataproxy's CPU. A
	// statement that rolls back the whole transaction on a conflict needs
	// no journal.
	conflictRollsBack bool

	// lockMigrations returns 1 once this session holds the migration lock of
	// the current database (empty: not needed).
	lockMigrations   string
	unlockMigrations string

	// retryable reports an error after which the whole transaction should
	// be run again (a deadlock victim).
	retryable func(error) bool

	// applied reports an error of a migration statement whose effect is
	// already there (a column or index added by an earlier, interrupted run
	// of the same migration). MySQL commits DDL statement by statement, so
	// a migration may stop halfway and be run again; SQLite runs each
	// migration in one transaction and never needs this.
	applied func(error) bool

	// greatest is the SQL function returning the larger of two values.
	greatest string
	// setCursors is the statement that raises the read and delivered
	// cursors of many conversation-list rows, given the table: (uid,
	// conv_id, delivered_seq, read_seq) per row; each value only grows.
	setCursors func(table string) rowSQL
}

var sqliteDialect = dialect{
	name: "sqlite",
	duplicate: func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se) && se.Code()&0xff == 19 // SQLITE_CONSTRAINT
	},
	keepTail: func(string) string { return " ON CONFLICT DO NOTHING" },
	// The UPDATEs of many rows below would need a statement journal too
	// (see conflictRollsBack); they can fail only on a broken database,
	// which fails the append either way.
	saveSeqs: func(t string) rowSQL {
		return rowSQL{head: "UPDATE OR ROLLBACK " + t + " SET last_seq = v.column2, updated_at_ms = v.column3 FROM (VALUES ", tuple: "(?, ?, ?)",
			tail: ") AS v WHERE " + t + ".conv_id = v.column1"}
	},
	hasTable:          "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
	listTables:        "SELECT name FROM sqlite_master WHERE type = 'table'",
	uninterrupted:     true,
	cursorsInCommit:   true,
	prepareWrites:     true,
	conflictRollsBack: true,
	retryable:         func(error) bool { return false },
	applied:           func(error) bool { return false },
	greatest:          "MAX",
	setCursors: func(t string) rowSQL {
		return rowSQL{head: "UPDATE OR ROLLBACK " + t + " SET delivered_seq = MAX(delivered_seq, v.column3), read_seq = MAX(read_seq, v.column4) FROM (VALUES ",
			tuple: "(?, ?, ?, ?)", tail: ") AS v WHERE " + t + ".uid = v.column1 AND " + t + ".conv_id = v.column2"}
	},
}

var mysqlDialect = dialect{
	name: "mysql",
	// Every connection is in READ COMMITTED (see readCommitted): the append
	// transaction locks the rows it depends on explicitly, and this level
	// takes no gap locks, which would make concurrent inserts of new
	// conversations deadlock.
	duplicate: func(err error) bool {
		var me *mysql.MySQLError
		return errors.As(err, &me) && me.Number == 1062 // ER_DUP_ENTRY
	},
	lockSuffix: " FOR UPDATE",
	keepTail:   func(col string) string { return " ON DUPLICATE KEY UPDATE " + col + " = " + col },
	// A UNION ALL derived table: MariaDB and MySQL spell a VALUES table
	// differently.
	saveSeqs: func(t string) rowSQL {
		return rowSQL{head: "UPDATE " + t + " AS c JOIN (", tuple: "SELECT ? AS id, ? AS s, ? AS u", sep: " UNION ALL ",
			tail: ") AS v ON c.conv_id = v.id SET c.last_seq = v.s, c.updated_at_ms = v.u"}
	},
	hasTable:   "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
	listTables: "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
	// GET_LOCK names are server-wide: one lock per database, so the shard
	// databases of one server migrate independently. Names are limited to
	// 64 characters, hence the hash.
	lockMigrations:   "SELECT GET_LOCK(CONCAT('gochat_migrate_', SHA1(DATABASE())), 60)",
	unlockMigrations: "SELECT RELEASE_LOCK(CONCAT('gochat_migrate_', SHA1(DATABASE())))",
	retryable: func(err error) bool {
		var me *mysql.MySQLError
		// 1213: deadlock found; InnoDB rolled the transaction back.
		return errors.As(err, &me) && me.Number == 1213
	},
	applied: func(err error) bool {
		var me *mysql.MySQLError
		// 1050 table exists, 1060 duplicate column, 1061 duplicate key name.
		return errors.As(err, &me) && (me.Number == 1050 || me.Number == 1060 || me.Number == 1061)
	},
	greatest: "GREATEST",
	setCursors: func(t string) rowSQL {
		return rowSQL{head: "UPDATE " + t + " AS c JOIN (", tuple: "SELECT ? AS u, ? AS cv, ? AS d, ? AS r", sep: " UNION ALL ",
			tail: ") AS v ON c.uid = v.u AND c.conv_id = v.cv SET c.delivered_seq = GREATEST(c.delivered_seq, v.d), c.read_seq = GREATEST(c.read_seq, v.r)"}
	},
}

// statementError reports whether err was caused by what a transaction
// wrote (the server refused a statement) rather than by the connection, the
// server's availability or a deadline. After such an error the group
// committer runs each call of a failed batch on its own, so that one call's
// bad data fails that call only; after any other error every call of the
// batch fails, as each would again.
func statementError(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone), errors.Is(err, errClosed):
		return false
	}
	var me *mysql.MySQLError
	var se *sqlite.Error
	var de *dataError
	return errors.As(err, &me) || errors.As(err, &se) || errors.As(err, &de) || errors.Is(err, mysql.ErrPktTooLarge)
}

// dataError is an error of the store's own about the data of one call.
type dataError struct{ msg string }

func (e *dataError) Error() string { return e.msg }
