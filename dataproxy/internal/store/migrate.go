package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The schema lives in migrations/<dialect>/NNNN_name.sql: one file per
// version, numbered from 1 with no gaps, the same versions for every dialect.
// A file is a list of statements, each ending with ';' at the end of a line;
// lines starting with "--" are comments. A statement naming a table as
// messages{{t}} (conversations{{t}}, user_conversations{{t}},
// chat_groups{{t}}, group_members{{t}}) is run once per table of the layout
// (see Layout.tableSuffix). Released files are never
// changed in what they do: a change is a new file. (Version 1 gained the
// {{t}} placeholders when sharding came; in a one-table layout it renders to
// exactly the statements it always ran.) MySQL commits every DDL statement
// on its own, so a migration that stops halfway is run again from its start
// next time; write its statements so that running them twice is harmless
// (IF NOT EXISTS; an ALTER that adds columns or indexes in one statement,
// whose second run fails with "duplicate column" or "duplicate key name",
// which the runner takes as done — see dialect.applied).
//
//go:embed migrations
var migrationFiles embed.FS

// tablePlaceholder marks a per-table statement in a migration file.
const tablePlaceholder = "{{t}}"

type migration struct {
	version int
	name    string
	stmts   []string
}

// loadMigrations reads the migrations of one dialect in version order.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations %s: %w", dialect, err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s/%s: want NNNN_name.sql", dir, name)
		}
		data, err := migrationFiles.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: rest, stmts: splitSQL(string(data))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations %s: version %d missing", dialect, i+1)
		}
		if len(m.stmts) == 0 {
			return nil, fmt.Errorf("migrations %s: version %d is empty", dialect, m.version)
		}
	}
	if len(out) >= layoutVersion && out[layoutVersion-1].name != layoutName {
		return nil, fmt.Errorf("migrations %s: version %d is %q, want %q (see migrate)", dialect, layoutVersion, out[layoutVersion-1].name, layoutName)
	}
	return out, nil
}

// splitSQL cuts a migration file into statements.
func splitSQL(text string) []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			stmts = append(stmts, s)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// render expands the per-table statements of m for layout l.
func (m migration) render(l Layout) []string {
	var out []string
	for _, st := range m.stmts {
		if !strings.Contains(st, tablePlaceholder) {
			out = append(out, st)
			continue
		}
		for t := range l.Tables {
			out = append(out, strings.ReplaceAll(st, tablePlaceholder, l.tableSuffix(t)))
		}
	}
	return out
}

// layoutRecord is the row of shard_layout.
type layoutRecord struct {
	LayoutID string
	Hash     string
	DBs      int
	Tables   int
	Shard    int
}

func (r layoutRecord) String() string {
	return fmt.Sprintf("shard %d of %s (layout %s, hash %s)", r.Shard, Layout{r.DBs, r.Tables}, r.LayoutID, r.Hash)
}

// ErrLayoutMismatch is wrapped by every refusal to use a database whose
// recorded layout differs from the configured one.
var ErrLayoutMismatch = errors.New("sharding layout differs from the configuration")

// checkRecord compares a database's record with what this store expects
// of it. wantID is the layout id of shard 0, or "" when not known yet.
func (d *shardDB) checkRecord(rec layoutRecord, wantID string) error {
	want := layoutRecord{LayoutID: rec.LayoutID, Hash: HashName, DBs: d.layout.DBs, Tables: d.layout.Tables, Shard: d.index}
	if wantID != "" {
		want.LayoutID = wantID
	}
	if rec != want {
		return fmt.Errorf("store: database %s is recorded as %v, but the configuration makes it %v: %w (see docs/DATAPROXY.md)",
			d.name, rec, want, ErrLayoutMismatch)
	}
	return nil
}

// readLayout returns the database's layout record; ok is false when it has
// none (no shard_layout table, or no row).
func (d *shardDB) readLayout(ctx context.Context, q queryer) (rec layoutRecord, ok bool, err error) {
	var n int
	if err := q.QueryRowContext(ctx, d.d.hasTable, "shard_layout").Scan(&n); err != nil {
		return rec, false, fmt.Errorf("read layout of %s: %w", d.name, err)
	}
	if n == 0 {
		return rec, false, nil
	}
	err = q.QueryRowContext(ctx, "SELECT layout_id, hash, dbs, tables_per_db, shard FROM shard_layout WHERE id = 1").
		Scan(&rec.LayoutID, &rec.Hash, &rec.DBs, &rec.Tables, &rec.Shard)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("read layout of %s: %w", d.name, err)
	}
	return rec, true, nil
}

// layoutVersion is the migration that creates shard_layout. Its one
// statement (CREATE TABLE IF NOT EXISTS) is also run ahead of the others
// when a new database is set up, so that the layout is recorded before any
// migration (see migrate); checked by loadMigrations.
const (
	layoutVersion = 2
	layoutName    = "shard_layout"
)

// migrate brings this database's schema up to the newest version and makes
// sure it belongs to the configured layout, recording the layout if it is
// new. wantID is the layout id read from shard 0 ("" for shard 0 itself);
// the database's layout id is returned. It is safe to call on every start
// and from several processes at once: MySQL takes a named lock per
// database, SQLite's write lock serialises the callers.
//
// The layout is recorded as soon as the table that holds it exists, before
// any further migration: on a new database (no migration recorded) the
// table is created and the record written first of all; on a database from
// before layouts were recorded, right after version 2. A start that stops
// anywhere (MySQL commits DDL statement by statement) therefore leaves
// either no migration recorded, which the next start takes as new, or the
// record, which it checks. A database with migrations but no record is
// judged by what it holds (see unrecordedProblem): that covers databases
// from before layouts, and those of a first start by an older binary that
// recorded the layout only after every migration and was stopped before.
func (d *shardDB) migrate(ctx context.Context, migs []migration, wantID string) (string, error) {
	conn, err := d.w.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("migrate %s: %w", d.name, err)
	}
	defer conn.Close()
	if d.d.lockMigrations != "" {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, d.d.lockMigrations).Scan(&got); err != nil {
			return "", fmt.Errorf("migrate %s: lock: %w", d.name, err)
		}
		if !got.Valid || got.Int64 != 1 {
			return "", fmt.Errorf("migrate %s: another process holds the migration lock", d.name)
		}
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), d.d.unlockMigrations) }()
	}
	if _, err := conn.ExecContext(ctx, createMigrationsTable(d.d)); err != nil {
		return "", fmt.Errorf("migrate %s: create schema_migrations: %w", d.name, err)
	}
	current, err := maxVersion(ctx, conn)
	if err != nil {
		return "", err
	}
	latest := len(migs)
	if current > latest {
		return "", fmt.Errorf("migrate %s: database schema version %d is newer than this binary's %d", d.name, current, latest)
	}
	rec, recorded, err := d.readLayout(ctx, conn)
	if err != nil {
		return "", err
	}
	switch {
	case recorded:
		if err := d.checkRecord(rec, wantID); err != nil {
			return "", err
		}
	case current >= 1:
		problem, err := d.unrecordedProblem(ctx, conn)
		if err != nil {
			return "", err
		}
		if problem != "" {
			return "", fmt.Errorf("store: database %s has schema version %d but no layout record, and %s: it holds an unsharded schema from before layouts were recorded (or one of another layout), but the configuration makes it shard %d of %s: %w (see docs/DATAPROXY.md)",
				d.name, current, problem, d.index, d.layout, ErrLayoutMismatch)
		}
	case latest >= layoutVersion:
		// A new database: the layout is recorded before anything else.
		for i, st := range migs[layoutVersion-1].render(d.layout) {
			if _, err := conn.ExecContext(ctx, st); err != nil {
				return "", fmt.Errorf("migrate %s: create %s (statement %d of version %d): %w", d.name, layoutName, i+1, layoutVersion, err)
			}
		}
	}
	// recordIfReady writes the record once its table exists.
	recordIfReady := func() error {
		if recorded {
			return nil
		}
		var n int
		if err := conn.QueryRowContext(ctx, d.d.hasTable, layoutName).Scan(&n); err != nil {
			return fmt.Errorf("migrate %s: %w", d.name, err)
		}
		if n == 0 {
			return nil
		}
		rec, err = d.recordLayout(ctx, conn, wantID)
		recorded = err == nil
		return err
	}
	if err := recordIfReady(); err != nil {
		return "", err
	}
	for _, m := range migs[current:] {
		if err := d.apply(ctx, conn, m); err != nil {
			return "", err
		}
		d.log.Info("schema migrated", "db", d.name, "version", m.version, "name", m.name)
		if err := recordIfReady(); err != nil {
			return "", err
		}
	}
	if !recorded {
		return "", fmt.Errorf("migrate %s: no %s table after the migrations", d.name, layoutName)
	}
	return rec.LayoutID, nil
}

// recordLayout writes the configured layout into the database's
// shard_layout, which has no record yet, and returns the record read back.
// wantID is the layout id of shard 0 ("" for shard 0: a new random id).
func (d *shardDB) recordLayout(ctx context.Context, conn *sql.Conn, wantID string) (layoutRecord, error) {
	id := wantID
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	// A parallel starter may record first; the row it wrote wins and is
	// checked like any other.
	if _, err := conn.ExecContext(ctx, "INSERT INTO shard_layout (id, layout_id, hash, dbs, tables_per_db, shard, created_at_ms) VALUES (1, ?, ?, ?, ?, ?, ?)"+
		d.d.keepTail("id"), id, HashName, d.layout.DBs, d.layout.Tables, d.index, time.Now().UnixMilli()); err != nil {
		return layoutRecord{}, fmt.Errorf("migrate %s: record layout: %w", d.name, err)
	}
	rec, recorded, err := d.readLayout(ctx, conn)
	if err != nil {
		return layoutRecord{}, err
	}
	if !recorded {
		return layoutRecord{}, fmt.Errorf("migrate %s: layout record missing after writing it", d.name)
	}
	if err := d.checkRecord(rec, wantID); err != nil {
		return layoutRecord{}, err
	}
	d.log.Info("sharding layout recorded", "db", d.name, "layout", rec.String())
	return rec, nil
}

// The tables that exist once per table of the layout, by their plain
// names (a layout of several tables per database numbers them).
const (
	tblConvs   = "conversations"
	tblUconvs  = "user_conversations"
	tblMsgs    = "messages"
	tblGroups  = "chat_groups"
	tblMembers = "group_members"
)

var (
	// v1Kinds are those migration 1 creates, trafficKinds all of them.
	v1Kinds      = []string{tblConvs, tblUconvs, tblMsgs}
	trafficKinds = []string{tblConvs, tblUconvs, tblMsgs, tblGroups, tblMembers}
)

// unrecordedProblem judges a database that has migrations but no layout
// record, which is either
//
//   - a database from before layouts were recorded (made unsharded, one
//     database of one table, with the plain table names, and maybe
//     interrupted while being upgraded), or
//   - one whose first start stopped before the record was written (only an
//     older binary, which wrote it after every migration, left this).
//
// The first may only become shard 0 of a one-database, one-table layout;
// the second was never used, so it may take the configured layout if its
// tables are the ones that layout makes. It returns "" when the database
// may take the configured layout, else what stands in the way: tables named
// for another number of tables per database, or rows in any of GoChat's
// tables. (An empty unsharded database with the plain names, configured as
// one table per database, cannot be told from the second kind and is
// accepted: nothing in it can be misplaced.)
func (d *shardDB) unrecordedProblem(ctx context.Context, q tableQueryer) (string, error) {
	if d.layout == (Layout{1, 1}) && d.index == 0 {
		return "", nil
	}
	rows, err := q.QueryContext(ctx, d.d.listTables)
	if err != nil {
		return "", fmt.Errorf("tables of %s: %w", d.name, err)
	}
	tables := map[string]bool{}
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			_ = rows.Close()
			return "", fmt.Errorf("tables of %s: %w", d.name, err)
		}
		tables[name] = true
		names = append(names, name)
	}
	if err := rows.Close(); err != nil {
		return "", fmt.Errorf("tables of %s: %w", d.name, err)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("tables of %s: %w", d.name, err)
	}
	// Version 1's traffic tables are all there (it is recorded), named for
	// the configured number of tables and no other.
	for _, kind := range v1Kinds {
		for t := range d.layout.Tables {
			if name := kind + d.layout.tableSuffix(t); !tables[name] {
				return "it has no table " + name, nil
			}
		}
		other := []string{kind + "_" + strconv.Itoa(d.layout.Tables)}
		if d.layout.Tables == 1 {
			other[0] = kind + "_0"
		} else {
			other = append(other, kind)
		}
		for _, name := range other {
			if tables[name] {
				return "it has a table " + name, nil
			}
		}
	}
	// Nothing was ever stored in it.
	sort.Strings(names)
	for _, name := range names {
		if !gochatTable(name) {
			continue
		}
		var one int
		err := q.QueryRowContext(ctx, "SELECT 1 FROM "+name+" LIMIT 1").Scan(&one)
		if err == nil {
			return "its table " + name + " holds rows", nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("read %s of %s: %w", name, d.name, err)
		}
	}
	return "", nil
}

// gochatTable reports whether name is users or one of the traffic tables
// (plain or numbered).
func gochatTable(name string) bool {
	if name == "users" {
		return true
	}
	for _, kind := range trafficKinds {
		if name == kind {
			return true
		}
		if n, ok := strings.CutPrefix(name, kind+"_"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return true
			}
		}
	}
	return false
}

type tableQueryer interface {
	queryer
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func createMigrationsTable(d dialect) string {
	if d.name == "mysql" {
		return "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL, applied_at_ms BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
	}
	return "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
}

func (d *shardDB) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s %d: %w", d.name, m.version, err)
	}
	defer func() { _ = tx.Rollback() }()
	// A parallel migrator may have applied this version between our read
	// and our write lock (SQLite); check again inside the transaction.
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
		return fmt.Errorf("migrate %s %d: %w", d.name, m.version, err)
	}
	if n > 0 {
		return nil
	}
	for i, st := range m.render(d.layout) {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			if d.d.applied(err) {
				// Done by an earlier run that stopped halfway (MySQL
				// commits DDL statement by statement).
				d.log.Info("migration statement already applied", "db", d.name, "version", m.version, "statement", i+1, "err", err)
				continue
			}
			return fmt.Errorf("migrate %s %d (%s) statement %d: %w", d.name, m.version, m.name, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("migrate %s %d: record: %w", d.name, m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s %d: commit: %w", d.name, m.version, err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func maxVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return int(v.Int64), nil
}

// schemaVersion reads the database's schema version without changing
// anything: 0 when it has no schema_migrations table.
func (d *shardDB) schemaVersion(ctx context.Context) (int, error) {
	var n int
	if err := d.r.QueryRowContext(ctx, d.d.hasTable, "schema_migrations").Scan(&n); err != nil {
		return 0, fmt.Errorf("schema version of %s: %w", d.name, err)
	}
	if n == 0 {
		return 0, nil
	}
	return maxVersion(ctx, d.r)
}

// Migrate brings every database of the store up to the newest schema
// version and checks (or, for a new database, records) its layout. Shard 0
// goes first: its layout id is what the others must carry.
func (s *SQLStore) Migrate(ctx context.Context) error {
	id := ""
	for _, d := range s.dbs {
		got, err := d.migrate(ctx, s.migrations, id)
		if err != nil {
			return err
		}
		id = got
	}
	return nil
}

// SchemaVersion reports the lowest schema version among the store's
// databases (0 for an empty one) and the newest this binary knows, without
// changing anything.
func (s *SQLStore) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	latest = len(s.migrations)
	current = latest
	for _, d := range s.dbs {
		v, err := d.schemaVersion(ctx)
		if err != nil {
			return 0, latest, err
		}
		current = min(current, v)
	}
	return current, latest, nil
}

// ShardSchema is what CheckSchema found in one database.
type ShardSchema struct {
	Shard   int
	Name    string // file path, or host/database
	Version int
	Latest  int
	Layout  string // the recorded layout, "" if none
	// Problem is empty when the database is current and matches the
	// configured layout; otherwise it says what is wrong.
	Problem string
}

// CheckSchema reads the schema version and the layout record of every
// database without changing anything. An error means a database could not
// be read at all.
func (s *SQLStore) CheckSchema(ctx context.Context) ([]ShardSchema, error) {
	out := make([]ShardSchema, 0, len(s.dbs))
	firstID := ""
	for _, d := range s.dbs {
		st := ShardSchema{Shard: d.index, Name: d.name, Latest: len(s.migrations)}
		v, err := d.schemaVersion(ctx)
		if err != nil {
			return nil, err
		}
		st.Version = v
		rec, ok, err := d.readLayout(ctx, d.r)
		if err != nil {
			return nil, err
		}
		if d.index == 0 && ok {
			firstID = rec.LayoutID
		}
		unrecorded := false
		switch {
		case ok:
			st.Layout = rec.String()
			if err := d.checkRecord(rec, firstID); err != nil {
				st.Problem = err.Error()
			}
		case v >= 1:
			problem, err := d.unrecordedProblem(ctx, d.r)
			if err != nil {
				return nil, err
			}
			if problem != "" {
				st.Problem = fmt.Sprintf("no layout record, and %s: holds an unsharded schema (or one of another layout), but the configuration makes it shard %d of %s", problem, d.index, d.layout)
			} else {
				// A first start that stopped before recording it, or a
				// database from before layouts, configured as such.
				unrecorded = true
			}
		}
		if st.Problem == "" && v != st.Latest {
			st.Problem = fmt.Sprintf("schema version %d, latest %d", v, st.Latest)
		}
		if unrecorded {
			const note = "layout not recorded yet (the next start records it)"
			if st.Problem == "" {
				st.Problem = note
			} else {
				st.Problem += "; " + note
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// LatestVersion is the newest schema version this binary knows for dialect
// ("sqlite" or "mysql").
func LatestVersion(dialect string) (int, error) {
	m, err := loadMigrations(dialect)
	return len(m), err
}
