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
	// Path of the database file of shard 0; its directory is created if
	// missing. The files of the other shards sit next to it (SQLitePaths).
	Path string
	// DBs is the number of database files; 0 means 1.
	DBs int
	// Sync is "full" (the default: a commit survives a power cut) or
	// "normal" (a commit survives a crash of the process; the last
	// transactions can be lost if the machine loses power).
	Sync string
	// Readers is the size of each file's read-only connection pool; 0
	// means 4.
	Readers int
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection or process; 0 means 5 s.
	BusyTimeout time.Duration
	// CheckpointEvery is the interval of each file's background WAL
	// checkpoint (see checkpointer); 0 means DefaultCheckpointEvery, and a
	// negative value leaves checkpoints to the writer's commits, every
	// 8192 pages of log.
	CheckpointEvery time.Duration
	// ReadOnly opens the files for inspection only: nothing is created or
	// changed, writes fail. For tools such as -check-schema.
	ReadOnly bool
	Options
}

// SQLitePaths returns the files of a store of dbs shards whose shard 0 is
// path: path itself, then "<name>-1<ext>", "<name>-2<ext>" ... next to it
// (gochat.db, gochat-1.db, ...). Shard 0 keeps the name of an unsharded
// store so that a store started with another number of files finds the
// old layout record and refuses to start.
func SQLitePaths(path string, dbs int) []string {
	out := []string{path}
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	for i := 1; i < dbs; i++ {
		out = append(out, base+"-"+strconv.Itoa(i)+ext)
	}
	return out
}

// OpenSQLite opens (creating if needed) the SQLite store whose shard 0 is
// cfg.Path. Call Ready (or Migrate) before use.
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
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	opts, err := cfg.Options.withDefaults()
	if err != nil {
		return nil, err
	}
	layout := Layout{DBs: cfg.DBs, Tables: opts.Tables}.withDefaults()
	if err := layout.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stats := &counters{}
	var dbs []*shardDB
	fail := func(err error) (*SQLStore, error) {
		for _, d := range dbs {
			_ = d.close()
		}
		return nil, err
	}
	for i, p := range SQLitePaths(cfg.Path, layout.DBs) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fail(fmt.Errorf("sqlite: %w", err))
		}
		w, r, ck, err := openSQLiteFile(abs, sync, cfg)
		if err != nil {
			return fail(err)
		}
		d := newShardDB(i, abs, layout, sqliteDialect, w, r, log, stats)
		// SQLite has no packet limit; the bound keeps statements modest.
		d.maxStmtBytes = 8 << 20
		if ck != nil {
			d.ckpt = startCheckpointer(ck, abs, cfg.CheckpointEvery, log, stats)
		}
		dbs = append(dbs, d)
	}
	s, err := newSQLStore(dbs, sqliteDialect, opts, stats, log)
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// openSQLiteFile opens one file: a single writer connection, a pool of
// query-only readers (both the same read-only pool with cfg.ReadOnly) and,
// unless checkpoints are left to the writer or the store is read-only, a
// connection for the background checkpoints.
func openSQLiteFile(abs, sync string, cfg SQLiteConfig) (w, r, ck *sql.DB, err error) {
	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	if cfg.ReadOnly {
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("sqlite %s: %w", abs, ErrNoDatabase)
		} else if err != nil {
			return nil, nil, nil, fmt.Errorf("sqlite: %w", err)
		}
		r, err := openPool(fileURI(abs, url.Values{"mode": {"ro"}, "_busy_timeout": {busy}, "_query_only": {"1"}}), cfg.Readers)
		return r, r, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite: %w", err)
	}
	// The writer sets WAL first: journal_mode is stored in the file, and the
	// readers must find it set.
	// Statement journals in memory: the multi-row INSERTs of new
	// conversations and list rows may fail half-way, and a file for the
	// journal would cost a write per page. (The append's messages and
	// cursors need none: see dialect.conflictRollsBack.) A 32 MiB page
	// cache (the default is 2 MiB) keeps the indexes of busy conversations
	// in memory. The writer checkpoints only as a backstop when the
	// checkpointer runs (see checkpoint.go).
	autockpt := writerCheckpointPages
	if cfg.CheckpointEvery > 0 {
		autockpt = backstopCheckpointPages
	}
	w, err = openPool(fileURI(abs, url.Values{
		"_busy_timeout": {busy},
		"_journal_mode": {"WAL"},
		"_synchronous":  {sync},
		"_txlock":       {"immediate"},
		"_pragma":       {"temp_store(memory)", "cache_size(-32768)", "wal_autocheckpoint(" + strconv.Itoa(autockpt) + ")"},
	}), 1)
	if err != nil {
		return nil, nil, nil, err
	}
	var mode string
	if err := w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		_ = w.Close()
		return nil, nil, nil, fmt.Errorf("sqlite: %s is not in WAL mode (%q): %w", abs, mode, err)
	}
	r, err = openPool(fileURI(abs, url.Values{"_busy_timeout": {busy}, "_query_only": {"1"}}), cfg.Readers)
	if err != nil {
		_ = w.Close()
		return nil, nil, nil, err
	}
	if cfg.CheckpointEvery > 0 {
		// A checkpoint syncs the database file as the connection that runs
		// it is told to: the same as the writer's commits.
		ck, err = openPool(fileURI(abs, url.Values{"_busy_timeout": {busy}, "_synchronous": {sync}}), 1)
		if err != nil {
			_ = w.Close()
			_ = r.Close()
			return nil, nil, nil, err
		}
	}
	return w, r, ck, nil
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
