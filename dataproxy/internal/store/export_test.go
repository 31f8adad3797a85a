package store

import "database/sql"

// PrimaryForTest is the primary pool of shard i, for tests of the
// connection settings.
func PrimaryForTest(s *SQLStore, i int) *sql.DB { return s.dbs[i].w }

// StopMigrationForTest makes the store's migration of version fail after
// its first after statements (of the file, each run for every table), as a
// start stopped there would: MySQL keeps what those statements did, SQLite
// rolls the migration back.
func StopMigrationForTest(s *SQLStore, version, after int) {
	m := s.migrations[version-1]
	stmts := append([]string(nil), m.stmts[:after]...)
	m.stmts = append(stmts, "SELECT no_such_column FROM schema_migrations")
	s.migrations[version-1] = m
}
