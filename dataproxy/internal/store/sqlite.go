package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLiteConfig configures the embedded store.
type SQLiteConfig struct {
	// Path of the database file; its directory is created if missing.
	Path string
	// Sync is "full" (the default: a commit survives a power cut) or
	// "normal" (a commit survives a crash of the process; the last
	// transactions can be lost if the machine loses power).
	Sync string
	// Readers is the size of the read-only connection pool; 0 means 4.
	Readers int
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection or process; 0 means 5 s.
	BusyTimeout time.Duration
	// ReadOnly opens the file for inspection only: nothing is created or
	// changed, writes fail. For tools such as -check-schema.
	ReadOnly bool
	Options
}

// OpenSQLite opens (creating if needed) the SQLite database at cfg.Path.
// Call Ready (or Migrate) before use.
func OpenSQLite(cfg SQLiteConfig, log *slog.Logger) (*SQLStore, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite: no path")
	}
	sync := strings.ToUpper(cfg.Sync)
	switch sync {
	case "":
		sync = "FULL"
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("sqlite: sync %q: want full or normal", cfg.Sync)
	}
	if cfg.Readers == 0 {
		cfg.Readers = 4
	}
	if cfg.BusyTimeout == 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)

	if cfg.ReadOnly {
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite %s: %w", abs, ErrNoDatabase)
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		r, err := openPool(fileURI(abs, url.Values{"mode": {"ro"}, "_busy_timeout": {busy}, "_query_only": {"1"}}), cfg.Readers)
		if err != nil {
			return nil, err
		}
		s, err := newSQLStore(r, r, sqliteDialect, cfg.Options, log)
		if err != nil {
			_ = r.Close()
		}
		return s, err
	}

	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// The writer sets WAL first: journal_mode is stored in the file, and the
	// readers must find it set.
	w, err := openPool(fileURI(abs, url.Values{
		"_busy_timeout": {busy},
		"_journal_mode": {"WAL"},
		"_synchronous":  {sync},
		"_txlock":       {"immediate"},
	}), 1)
	if err != nil {
		return nil, err
	}
	var mode string
	if err := w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: %s is not in WAL mode (%q): %w", abs, mode, err)
	}
	r, err := openPool(fileURI(abs, url.Values{"_busy_timeout": {busy}, "_query_only": {"1"}}), cfg.Readers)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	s, err := newSQLStore(w, r, sqliteDialect, cfg.Options, log)
	if err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, err
	}
	return s, nil
}

// fileURI builds a SQLite URI filename: the path is escaped, so any
// character in it is safe.
func fileURI(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// openPool opens a pool of n connections that are kept open for the life of
// the store.
func openPool(dsn string, n int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	return db, nil
}
