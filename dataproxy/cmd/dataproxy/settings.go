package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
)

// minCheckpointEvery bounds -sqlite-checkpoint from below: a shorter
// interval would only keep a goroutine and the log's locks busy.
const minCheckpointEvery = 10 * time.Millisecond

type settings struct {
	listen, advertise string
	registryTTL       time.Duration
	store             string
	dataDir           string
	sqliteSync        string
	sqliteReaders     int
	sqliteCheckpoint  time.Duration
	mysqlDSN          string
	shardDBs          string
	shardTables       int
	shardReplicas     string
	mysqlMaxOpen      int
	mysqlMaxIdle      int
	groupMax          int
	groupWait         time.Duration
	groupWriters      int
	txTimeout         time.Duration
	indexCache        int
	redisAddr         string
	redisPassword     string
	redisDB           int
	redisPrefix       string
	redisPool         int
	routeTTL          time.Duration
	maxBody           int
	maxRequestBytes   int
	maxGroupMembers   int
	startupTimeout    time.Duration
	checkSchema       bool
	pprofListen       string
}

func (s *settings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.listen, "listen", "127.0.0.1:8910", "Kitex listen address; 0.0.0.0:port listens everywhere and registers the first non-loopback IPv4")
	fs.StringVar(&s.advertise, "advertise", "", "address to register in etcd instead of the listen address")
	fs.DurationVar(&s.registryTTL, "registry-ttl", 10*time.Second, "etcd lease TTL: how long a dead instance stays registered")
	fs.StringVar(&s.store, "store", "sqlite", "storage: sqlite (embedded files under -data-dir) or mysql (-mysql-dsn or -shard-dbs)")
	fs.StringVar(&s.dataDir, "data-dir", "./data", "data directory; the SQLite files are <data-dir>/dataproxy/gochat.db, gochat-1.db, ...")
	fs.StringVar(&s.sqliteSync, "sqlite-sync", "full", "SQLite synchronous mode: full (survives power loss) or normal (survives a crash of the process)")
	fs.IntVar(&s.sqliteReaders, "sqlite-readers", 4, "read-only connections per SQLite file")
	fs.DurationVar(&s.sqliteCheckpoint, "sqlite-checkpoint", store.DefaultCheckpointEvery, "interval of the background checkpoints that copy each SQLite file's write-ahead log into it, off the commits' path; 0 leaves them to the commits (every 8192 pages of log)")
	fs.StringVar(&s.mysqlDSN, "mysql-dsn", "", `MySQL DSN of a single database, e.g. "gochat:secret@tcp(127.0.0.1:3306)/gochat" (prefer GOCHAT_MYSQL_DSN for the password)`)
	fs.StringVar(&s.shardDBs, "shard-dbs", "", `the shard databases. mysql: their DSNs in shard order, separated by ";" (instead of -mysql-dsn; prefer GOCHAT_SHARD_DBS); sqlite: how many files (default 1). Fixed when the databases are created`)
	fs.IntVar(&s.shardTables, "shard-tables", 1, "tables of each kind per shard database; fixed when the databases are created")
	fs.StringVar(&s.shardReplicas, "shard-replicas", "", `mysql read replicas, "<shard>=<dsn>" entries separated by ";" (a shard may have several)`)
	fs.IntVar(&s.mysqlMaxOpen, "mysql-max-open", 32, "MySQL connection pool size per database and per replica")
	fs.IntVar(&s.mysqlMaxIdle, "mysql-max-idle", 16, "MySQL idle connections kept per database and per replica")
	fs.IntVar(&s.groupMax, "group-commit-max", store.DefaultGroupMaxItems, "an append batch stops taking calls once it holds this many messages, conversation-list rows and cursor updates (calls are taken whole, so a batch may go past it, and a larger call commits alone); 1 turns group commit off")
	fs.DurationVar(&s.groupWait, "group-commit-wait", 0, "how long a writer waits for more calls before committing a batch (0: commit what is queued; calls arriving during a commit share the next one)")
	fs.IntVar(&s.groupWriters, "group-commit-writers", 0, "append transactions in flight per database (0: 1, or 2 for a single mysql database)")
	fs.DurationVar(&s.txTimeout, "tx-timeout", store.DefaultTxTimeout, "longest an append transaction may take")
	fs.IntVar(&s.indexCache, "list-cache", store.DefaultIndexCache, "conversation-list rows remembered as written (per generation); 0 turns the cache off")
	fs.StringVar(&s.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address")
	fs.StringVar(&s.redisPassword, "redis-password", "", "Redis password (prefer the environment: GOCHAT_REDIS_PASSWORD)")
	fs.IntVar(&s.redisDB, "redis-db", 0, "Redis database number")
	fs.StringVar(&s.redisPrefix, "redis-prefix", routes.DefaultPrefix, "prefix of every Redis key")
	fs.IntVar(&s.redisPool, "redis-pool", 0, "Redis connection pool size (0: 10 per CPU)")
	fs.DurationVar(&s.routeTTL, "route-ttl", routes.DefaultTTL, "lifetime of an online route unless the caller gives one")
	fs.IntVar(&s.maxBody, "max-body", store.DefaultMaxBody, "largest message body in bytes")
	fs.IntVar(&s.maxRequestBytes, "max-request-bytes", handler.DefaultMaxRequestBytes, "largest sum of message sizes in one AppendMessages call")
	fs.IntVar(&s.maxGroupMembers, "max-group-members", store.DefaultMaxGroupMembers, "most members a group may have")
	fs.DurationVar(&s.startupTimeout, "startup-timeout", time.Minute, "how long to wait at start for the databases and Redis to answer")
	fs.StringVar(&s.pprofListen, "pprof-listen", "", "address of a net/http/pprof server for profiling (empty: none; never expose it)")
	fs.BoolVar(&s.checkSchema, "check-schema", false, "print every shard database's schema version and layout, exit 0 if all are current, 1 if not, 2 if one could not be read; changes nothing")
}

func (s *settings) validate() error {
	switch {
	case s.store != "sqlite" && s.store != "mysql":
		return fmt.Errorf("-store %q: want sqlite or mysql", s.store)
	case s.store == "mysql" && s.mysqlDSN == "" && s.shardDBs == "":
		return errors.New("-store mysql needs -mysql-dsn or -shard-dbs")
	case s.store == "mysql" && s.mysqlDSN != "" && s.shardDBs != "":
		return errors.New("set -mysql-dsn (one database) or -shard-dbs (several), not both")
	case s.store == "sqlite" && s.shardReplicas != "":
		return errors.New("-shard-replicas needs -store mysql")
	case s.sqliteSync != "full" && s.sqliteSync != "normal":
		return fmt.Errorf("-sqlite-sync %q: want full or normal", s.sqliteSync)
	case s.sqliteReaders < 1:
		return fmt.Errorf("-sqlite-readers %d: want at least 1", s.sqliteReaders)
	case s.sqliteCheckpoint != 0 && s.sqliteCheckpoint < minCheckpointEvery:
		return fmt.Errorf("-sqlite-checkpoint %v: want 0 (off) or at least %v", s.sqliteCheckpoint, minCheckpointEvery)
	case s.maxBody < 1 || s.maxBody > store.MaxMaxBody:
		return fmt.Errorf("-max-body %d: want 1..%d", s.maxBody, store.MaxMaxBody)
	case s.maxGroupMembers < 1:
		return fmt.Errorf("-max-group-members %d: want at least 1", s.maxGroupMembers)
	case s.maxRequestBytes < s.maxBody:
		return fmt.Errorf("-max-request-bytes %d: want at least -max-body (%d)", s.maxRequestBytes, s.maxBody)
	case s.routeTTL < time.Second:
		return fmt.Errorf("-route-ttl %v: want at least 1s", s.routeTTL)
	case s.registryTTL < time.Second:
		return fmt.Errorf("-registry-ttl %v: want at least 1s", s.registryTTL)
	case s.shardTables < 1 || s.shardTables > store.MaxShardTables:
		return fmt.Errorf("-shard-tables %d: want 1..%d", s.shardTables, store.MaxShardTables)
	case s.mysqlMaxOpen < 1 || s.mysqlMaxIdle < 0:
		return fmt.Errorf("-mysql-max-open %d, -mysql-max-idle %d: want at least 1 and 0", s.mysqlMaxOpen, s.mysqlMaxIdle)
	case s.groupMax < 1:
		return fmt.Errorf("-group-commit-max %d: want at least 1", s.groupMax)
	case s.groupWait < 0 || s.groupWait > store.MaxGroupWait:
		return fmt.Errorf("-group-commit-wait %v: want 0..%v", s.groupWait, store.MaxGroupWait)
	case s.groupWriters < 0 || s.txTimeout < time.Second || s.indexCache < 0 || s.redisPool < 0:
		return errors.New("-group-commit-writers, -list-cache and -redis-pool must not be negative, -tx-timeout at least 1s")
	}
	if _, err := s.sqliteDBs(); err != nil {
		return err
	}
	if _, err := s.replicas(); err != nil {
		return err
	}
	if s.store == "mysql" {
		return s.checkDSNs()
	}
	return nil
}

// checkDSNs parses every MySQL DSN as the store will. Opening the store is
// retried until -startup-timeout, since MySQL may still be starting, and a
// DSN that is not one would be retried too, reported only as "waiting for
// mysql"; so it is refused here, before anything is contacted. Passwords
// are left out of the errors.
func (s *settings) checkDSNs() error {
	seen := make(map[string]int)
	for i, dsn := range s.mysqlDSNs() {
		what := "-mysql-dsn"
		if s.mysqlDSN == "" {
			what = fmt.Sprintf("-shard-dbs shard %d", i)
		}
		mc, err := store.CheckDSN(dsn)
		if err != nil {
			return fmt.Errorf("%s %q: %w", what, redact(dsn), err)
		}
		// The store refuses this too, but only after it has connected to
		// the shards before.
		db := mc.Addr + "/" + mc.DBName
		if j, dup := seen[db]; dup {
			return fmt.Errorf("-shard-dbs: shards %d and %d are the same database %s", j, i, db)
		}
		seen[db] = i
	}
	reps, _ := s.replicas() // checked by validate
	for shard, dsns := range reps {
		for _, dsn := range dsns {
			if _, err := store.CheckDSN(dsn); err != nil {
				return fmt.Errorf("-shard-replicas entry %q: %w", fmt.Sprintf("%d=%s", shard, redact(dsn)), err)
			}
		}
	}
	return nil
}

// sqliteDBs is the number of SQLite files.
func (s *settings) sqliteDBs() (int, error) {
	if s.store != "sqlite" || s.shardDBs == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s.shardDBs))
	if err != nil || n < 1 || n > store.MaxShardDBs {
		return 0, fmt.Errorf("-shard-dbs %q: with -store sqlite, want a number of files 1..%d", s.shardDBs, store.MaxShardDBs)
	}
	return n, nil
}

// mysqlDSNs are the shard databases in order.
func (s *settings) mysqlDSNs() []string {
	if s.mysqlDSN != "" {
		return []string{s.mysqlDSN}
	}
	return splitList(s.shardDBs)
}

// replicas parses -shard-replicas into per-shard lists.
func (s *settings) replicas() ([][]string, error) {
	var out [][]string
	n := len(s.mysqlDSNs())
	for _, e := range splitList(s.shardReplicas) {
		i, dsn, ok := strings.Cut(e, "=")
		shard, err := strconv.Atoi(strings.TrimSpace(i))
		if !ok || err != nil || shard < 0 || shard >= n || strings.TrimSpace(dsn) == "" {
			return nil, fmt.Errorf("-shard-replicas entry %q: want <shard>=<dsn> with shard 0..%d", redact(e), n-1)
		}
		for len(out) <= shard {
			out = append(out, nil)
		}
		out[shard] = append(out[shard], strings.TrimSpace(dsn))
	}
	return out, nil
}

// splitList splits a ';'-separated list, dropping empty entries. (DSNs may
// hold commas, as in charset=utf8mb4,utf8.)
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redact hides the password of a DSN quoted in an error.
func redact(s string) string {
	at := strings.LastIndex(s, "@")
	colon := strings.Index(s, ":")
	if at < 0 || colon < 0 || colon > at {
		return s
	}
	return s[:colon] + ":***" + s[at:]
}

func (s *settings) sqlitePath() string { return filepath.Join(s.dataDir, "dataproxy", "gochat.db") }

func (s *settings) storeOptions() store.Options {
	cache := s.indexCache
	if cache == 0 {
		cache = -1 // off
	}
	return store.Options{
		MaxBody: s.maxBody, Tables: s.shardTables, IndexCache: cache, MaxGroupMembers: s.maxGroupMembers,
		GroupCommit: store.GroupCommit{MaxItems: s.groupMax, MaxWait: s.groupWait, Writers: s.groupWriters, TxTimeout: s.txTimeout},
	}
}

func (s *settings) sqliteConfig(readOnly bool) store.SQLiteConfig {
	n, _ := s.sqliteDBs() // checked by validate
	every := s.sqliteCheckpoint
	if every == 0 {
		every = -1 // off: SQLiteConfig's 0 means the default
	}
	return store.SQLiteConfig{Path: s.sqlitePath(), DBs: n, Sync: s.sqliteSync, Readers: s.sqliteReaders, CheckpointEvery: every,
		ReadOnly: readOnly, Options: s.storeOptions()}
}

func (s *settings) mysqlConfig(readOnly bool) store.MySQLConfig {
	reps, _ := s.replicas() // checked by validate
	return store.MySQLConfig{
		DSNs: s.mysqlDSNs(), Replicas: reps, MaxOpen: s.mysqlMaxOpen, MaxIdle: s.mysqlMaxIdle,
		CreateDatabase: !readOnly, Options: s.storeOptions(),
	}
}
