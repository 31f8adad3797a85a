package store

import (
	"context"
	"database/sql"
	"embed"
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
// lines starting with "--" are comments. Released files are never edited:
// a change is a new file. MySQL commits every DDL statement on its own, so a
// migration that stops halfway is run again from its start next time; write
// its statements so that running them twice is harmless (IF NOT EXISTS, or a
// check of information_schema).
//
//go:embed migrations
var migrationFiles embed.FS

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

// Migrate brings the schema up to the newest version, one transaction per
// version where the database allows it. It is safe to call on every start
// and from several processes at once: MySQL takes a named lock, SQLite's
// write lock serialises the callers.
func (s *SQLStore) Migrate(ctx context.Context) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if s.d.lockMigrations != "" {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, s.d.lockMigrations).Scan(&got); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if !got.Valid || got.Int64 != 1 {
			return errors.New("migrate: another process holds the migration lock")
		}
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), s.d.unlockMigrations) }()
	}
	if _, err := conn.ExecContext(ctx, s.d.createMigrationsTable); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	current, err := maxVersion(ctx, conn)
	if err != nil {
		return err
	}
	latest := len(s.migrations)
	if current > latest {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary's %d", current, latest)
	}
	for _, m := range s.migrations[current:] {
		if err := s.apply(ctx, conn, m); err != nil {
			return err
		}
		s.log.Info("schema migrated", "version", m.version, "name", m.name)
	}
	return nil
}

func (s *SQLStore) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %d: %w", m.version, err)
	}
	defer func() { _ = tx.Rollback() }()
	// A parallel migrator may have applied this version between our read
	// and our write lock (SQLite); check again inside the transaction.
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
		return fmt.Errorf("migrate %d: %w", m.version, err)
	}
	if n > 0 {
		return nil
	}
	for i, st := range m.stmts {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("migrate %d (%s) statement %d: %w", m.version, m.name, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("migrate %d: record: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %d: commit: %w", m.version, err)
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

// SchemaVersion reports the database's schema version without changing
// anything: 0 when the database has no schema_migrations table.
func (s *SQLStore) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	latest = len(s.migrations)
	var n int
	if err := s.r.QueryRowContext(ctx, s.d.hasMigrationsTable).Scan(&n); err != nil {
		return 0, latest, fmt.Errorf("schema version: %w", err)
	}
	if n == 0 {
		return 0, latest, nil
	}
	current, err = maxVersion(ctx, s.r)
	return current, latest, err
}

// LatestVersion is the newest schema version this binary knows for dialect
// ("sqlite" or "mysql").
func LatestVersion(dialect string) (int, error) {
	m, err := loadMigrations(dialect)
	return len(m), err
}
