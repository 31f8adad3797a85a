package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLConfig configures the MySQL/MariaDB store.
type MySQLConfig struct {
	// DSNs name the shard databases in shard order, in go-sql-driver/mysql
	// form: "user:pass@tcp(host:3306)/gochat_0". The order is part of the
	// layout: shard i must always be the same database.
	DSNs []string
	// DSN is a shorthand for a single database (DSNs must then be empty).
	DSN string
	// Replicas[i] lists read replicas of shard i (may be shorter than DSNs
	// or empty). See SQLStore.SyncMessages for what they serve.
	Replicas [][]string
	// MaxOpen and MaxIdle size the connection pool of each database (and
	// each replica); 0 means 32 and 16.
	MaxOpen int
	MaxIdle int
	// ConnMaxLifetime recycles connections (0 means 30 minutes), staying
	// below the server's wait_timeout.
	ConnMaxLifetime time.Duration
	// CreateDatabase creates a DSN's database (utf8mb4) when it is missing.
	CreateDatabase bool
	Options
}

// OpenMySQL connects to every shard database and checks each connection
// once. A missing database (with CreateDatabase off) is ErrNoDatabase. Call
// Ready (or Migrate) before use.
func OpenMySQL(ctx context.Context, cfg MySQLConfig, log *slog.Logger) (*SQLStore, error) {
	dsns := cfg.DSNs
	if cfg.DSN != "" {
		if len(dsns) > 0 {
			return nil, errors.New("mysql: set DSN or DSNs, not both")
		}
		dsns = []string{cfg.DSN}
	}
	if len(dsns) == 0 {
		return nil, errors.New("mysql: no database")
	}
	if len(cfg.Replicas) > len(dsns) {
		return nil, fmt.Errorf("mysql: replicas for %d shards, but there are %d", len(cfg.Replicas), len(dsns))
	}
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen = 32
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 16
	}
	if cfg.ConnMaxLifetime == 0 {
		cfg.ConnMaxLifetime = 30 * time.Minute
	}
	opts, err := cfg.Options.withDefaults()
	if err != nil {
		return nil, err
	}
	layout := Layout{DBs: len(dsns), Tables: opts.Tables}.withDefaults()
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
	seen := make(map[string]int)
	for i, dsn := range dsns {
		mc, err := parseDSN(dsn)
		if err != nil {
			return fail(fmt.Errorf("mysql shard %d: %w", i, err))
		}
		name := mc.Addr + "/" + mc.DBName
		if j, dup := seen[name]; dup {
			return fail(fmt.Errorf("mysql: shards %d and %d are the same database %s", j, i, name))
		}
		seen[name] = i
		if cfg.CreateDatabase {
			if err := createDatabase(ctx, mc); err != nil {
				return fail(err)
			}
		}
		db, err := openMySQLPool(ctx, mc, cfg)
		if err != nil {
			return fail(err)
		}
		d := newShardDB(i, name, layout, mysqlDialect, db, db, log, stats)
		dbs = append(dbs, d)
		packet, err := maxPacket(ctx, db)
		if err != nil {
			return fail(fmt.Errorf("mysql %s: %w", name, err))
		}
		// Values are estimated at twice their size (escaping); keep a
		// statement within the server's packet limit.
		d.maxStmtBytes = max(64<<10, min(8<<20, packet-4096))
		if limit := (packet - 4096) / 2; opts.MaxBody > limit {
			log.Warn("max body lowered to fit the server's max_allowed_packet", "db", name, "max_body", limit, "max_allowed_packet", packet)
			opts.MaxBody = max(1, limit)
		}
		if i < len(cfg.Replicas) {
			for _, rdsn := range cfg.Replicas[i] {
				rc, err := parseDSN(rdsn)
				if err != nil {
					return fail(fmt.Errorf("mysql replica of shard %d: %w", i, err))
				}
				// A replica that is down does not stop the service: its
				// reads go to the primary until it answers.
				rdb, err := openMySQLPool(ctx, rc, cfg)
				if err != nil {
					log.Warn("replica not answering; its reads go to the primary", "db", name, "replica", rc.Addr+"/"+rc.DBName, "err", err)
					conn, cerr := mysql.NewConnector(rc)
					if cerr != nil {
						return fail(cerr)
					}
					rdb = sql.OpenDB(conn)
					poolLimits(rdb, cfg)
				}
				d.replicas = append(d.replicas, rdb)
			}
		}
	}
	s, err := newSQLStore(dbs, mysqlDialect, opts, stats, log)
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// CheckDSN parses a DSN as the store does, which wants a database name.
// dataproxy's settings check calls it before anything is contacted, so a
// DSN that is not one is refused at once rather than retried.
func CheckDSN(dsn string) (*mysql.Config, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if mc.DBName == "" {
		return nil, errors.New("no database name (want user:password@tcp(host:port)/database)")
	}
	return mc, nil
}

// parseDSN parses a DSN (CheckDSN) and sets what the store relies on:
// client-side parameter interpolation (one round trip per statement
// instead of prepare, execute and close), the server's own packet limit
// (so that an oversized statement is refused before it is sent and the
// connection survives), and a connect timeout.
func parseDSN(dsn string) (*mysql.Config, error) {
	mc, err := CheckDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	if mc.Timeout == 0 {
		mc.Timeout = 5 * time.Second
	}
	if !strings.Contains(dsn, "interpolateParams=") {
		mc.InterpolateParams = true
	}
	if !strings.Contains(dsn, "maxAllowedPacket=") {
		mc.MaxAllowedPacket = 0 // read max_allowed_packet from the server
	}
	return mc, nil
}

func openMySQLPool(ctx context.Context, mc *mysql.Config, cfg MySQLConfig) (*sql.DB, error) {
	if err := readCommitted(ctx, mc); err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1049 { // unknown database
			return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, ErrNoDatabase)
		}
		return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	poolLimits(db, cfg)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1049 { // unknown database
			return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, ErrNoDatabase)
		}
		return nil, fmt.Errorf("mysql %s/%s: %w", mc.Addr, mc.DBName, err)
	}
	return db, nil
}

// readCommitted makes every connection of mc start in READ COMMITTED, the
// level the append transaction is written for (it locks what it depends on
// explicitly; REPEATABLE READ would add gap locks and deadlocks). Setting it
// per session saves a statement per transaction. The variable is
// transaction_isolation in MySQL 8 and MariaDB 11.1+, tx_isolation before;
// a DSN that sets either is left alone.
func readCommitted(ctx context.Context, mc *mysql.Config) error {
	for _, name := range []string{"transaction_isolation", "tx_isolation"} {
		if _, ok := mc.Params[name]; ok {
			return nil
		}
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	name := "transaction_isolation"
	var level string
	if err := db.QueryRowContext(ctx, "SELECT @@transaction_isolation").Scan(&level); err != nil {
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1193 { // unknown system variable
			return err
		}
		name = "tx_isolation"
	}
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params[name] = "'READ-COMMITTED'"
	return nil
}

func poolLimits(db *sql.DB, cfg MySQLConfig) {
	db.SetMaxOpenConns(cfg.MaxOpen)
	db.SetMaxIdleConns(cfg.MaxIdle)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
}

func maxPacket(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&n); err != nil {
		return 0, fmt.Errorf("read max_allowed_packet: %w", err)
	}
	return n, nil
}

// createDatabase creates mc's database unless it exists.
func createDatabase(ctx context.Context, mc *mysql.Config) error {
	server := mc.Clone()
	server.DBName = ""
	conn, err := mysql.NewConnector(server)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	q := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(mc.DBName) + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("mysql %s: create database %s: %w", mc.Addr, mc.DBName, err)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
