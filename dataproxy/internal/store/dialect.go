package store

import (
	"database/sql"
	"errors"

	"github.com/go-sql-driver/mysql"
)

// dialect holds the SQL that differs between SQLite and MySQL. Everything
// else in SQLStore is plain SQL both accept.
type dialect struct {
	name string

	// txOptions for write transactions.
	txOptions *sql.TxOptions
	// lockSuffix turns a SELECT into a locking read ("" on SQLite, where the
	// single writer connection already excludes every other writer).
	lockSuffix string
	// insertIgnore* create a row unless its key exists, leaving the existing
	// row as it was. On MySQL this is INSERT ... ON DUPLICATE KEY UPDATE with
	// a no-op assignment rather than INSERT IGNORE: it takes an exclusive lock
	// on a duplicate at once (no shared-then-exclusive upgrade that could
	// deadlock) and does not turn data errors into warnings.
	insertConv     string
	insertUserConv string
	insertMessage  string
	// insertUsersHead and insertUsersTail wrap the VALUES rows of a
	// multi-row user insert.
	insertUsersHead string
	insertUsersTail string

	createMigrationsTable string
	hasMigrationsTable    string
	// lockMigrations returns 1 once this session holds the migration lock
	// (empty: not needed).
	lockMigrations   string
	unlockMigrations string

	// retryable reports an error after which the whole transaction should
	// be run again (a deadlock victim).
	retryable func(error) bool
}

const (
	convCols    = "(conv_id, kind, last_seq, created_at_ms, updated_at_ms) VALUES (?, ?, 0, ?, 0)"
	userConvCol = "(uid, conv_id, kind, peer, created_at_ms) VALUES (?, ?, ?, ?, ?)"
	messageCols = "(conv_id, seq, sender, recipient, client_msg_id, content_type, body, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

var sqliteDialect = dialect{
	name:                  "sqlite",
	insertConv:            "INSERT INTO conversations " + convCols + " ON CONFLICT (conv_id) DO NOTHING",
	insertUserConv:        "INSERT INTO user_conversations " + userConvCol + " ON CONFLICT (uid, conv_id) DO NOTHING",
	insertMessage:         "INSERT INTO messages " + messageCols + " ON CONFLICT DO NOTHING",
	insertUsersHead:       "INSERT INTO users (uid, name, created_at_ms) VALUES ",
	insertUsersTail:       " ON CONFLICT (uid) DO NOTHING",
	createMigrationsTable: "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
	hasMigrationsTable:    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
	retryable:             func(error) bool { return false },
}

var mysqlDialect = dialect{
	name:                  "mysql",
	lockSuffix:            " FOR UPDATE",
	insertConv:            "INSERT INTO conversations " + convCols + " ON DUPLICATE KEY UPDATE conv_id = conv_id",
	insertUserConv:        "INSERT INTO user_conversations " + userConvCol + " ON DUPLICATE KEY UPDATE uid = uid",
	insertMessage:         "INSERT INTO messages " + messageCols + " ON DUPLICATE KEY UPDATE seq = seq",
	insertUsersHead:       "INSERT INTO users (uid, name, created_at_ms) VALUES ",
	insertUsersTail:       " ON DUPLICATE KEY UPDATE uid = uid",
	createMigrationsTable: "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL, applied_at_ms BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	hasMigrationsTable:    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'",
	lockMigrations:        "SELECT GET_LOCK('gochat_schema_migrations', 60)",
	unlockMigrations:      "SELECT RELEASE_LOCK('gochat_schema_migrations')",
	retryable: func(err error) bool {
		var me *mysql.MySQLError
		// 1213: deadlock found; InnoDB rolled the transaction back.
		return errors.As(err, &me) && me.Number == 1213
	},
}
