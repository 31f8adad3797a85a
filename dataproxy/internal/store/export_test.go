package store

import "database/sql"

// PrimaryForTest is the primary pool of shard i, for tests of the
// connection settings.
func PrimaryForTest(s *SQLStore, i int) *sql.DB { return s.dbs[i].w }
