// Command dataproxy serves GoChat's storage API over Kitex: messages,
// conversations and users in SQLite (default) or MySQL, and the online route
// table in Redis. It registers itself in etcd as gochat.dataproxy.
//
// Every flag can also come from a config file (-config) or the environment
// (GOCHAT_<FLAG_NAME>, e.g. GOCHAT_REDIS_PASSWORD, GOCHAT_MYSQL_DSN); keep
// secrets in the environment. -check-schema prints the database's schema
// version and exits 0 if it is current, 1 if it is not, 2 if it could not
// be read; it changes nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/rpcx"
	"github.com/gochat-im/gochat/pkg/svc"
)

type settings struct {
	listen, advertise string
	registryTTL       time.Duration
	store             string
	dataDir           string
	sqliteSync        string
	mysqlDSN          string
	mysqlMaxOpen      int
	mysqlMaxIdle      int
	redisAddr         string
	redisPassword     string
	redisDB           int
	redisPrefix       string
	routeTTL          time.Duration
	maxBody           int
	startupTimeout    time.Duration
	checkSchema       bool
}

func (s *settings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.listen, "listen", "127.0.0.1:8910", "Kitex listen address; 0.0.0.0:port listens everywhere and registers the first non-loopback IPv4")
	fs.StringVar(&s.advertise, "advertise", "", "address to register in etcd instead of the listen address")
	fs.DurationVar(&s.registryTTL, "registry-ttl", 10*time.Second, "etcd lease TTL: how long a dead instance stays registered")
	fs.StringVar(&s.store, "store", "sqlite", "storage: sqlite (embedded file under -data-dir) or mysql (-mysql-dsn)")
	fs.StringVar(&s.dataDir, "data-dir", "./data", "data directory; the SQLite file is <data-dir>/dataproxy/gochat.db")
	fs.StringVar(&s.sqliteSync, "sqlite-sync", "full", "SQLite synchronous mode: full (survives power loss) or normal (survives a crash of the process)")
	fs.StringVar(&s.mysqlDSN, "mysql-dsn", "", `MySQL DSN, e.g. "gochat:secret@tcp(127.0.0.1:3306)/gochat" (prefer GOCHAT_MYSQL_DSN for the password)`)
	fs.IntVar(&s.mysqlMaxOpen, "mysql-max-open", 32, "MySQL connection pool size")
	fs.IntVar(&s.mysqlMaxIdle, "mysql-max-idle", 16, "MySQL idle connections kept")
	fs.StringVar(&s.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address")
	fs.StringVar(&s.redisPassword, "redis-password", "", "Redis password (prefer the environment: GOCHAT_REDIS_PASSWORD)")
	fs.IntVar(&s.redisDB, "redis-db", 0, "Redis database number")
	fs.StringVar(&s.redisPrefix, "redis-prefix", routes.DefaultPrefix, "prefix of every Redis key")
	fs.DurationVar(&s.routeTTL, "route-ttl", routes.DefaultTTL, "lifetime of an online route unless the caller gives one")
	fs.IntVar(&s.maxBody, "max-body", store.DefaultMaxBody, "largest message body in bytes")
	fs.DurationVar(&s.startupTimeout, "startup-timeout", time.Minute, "how long to wait at start for the database and Redis to answer")
	fs.BoolVar(&s.checkSchema, "check-schema", false, "print the database schema version, exit 0 if current, 1 if not; changes nothing")
}

func (s *settings) validate() error {
	switch {
	case s.store != "sqlite" && s.store != "mysql":
		return fmt.Errorf("-store %q: want sqlite or mysql", s.store)
	case s.store == "mysql" && s.mysqlDSN == "":
		return errors.New("-store mysql needs -mysql-dsn")
	case s.sqliteSync != "full" && s.sqliteSync != "normal":
		return fmt.Errorf("-sqlite-sync %q: want full or normal", s.sqliteSync)
	case s.maxBody < 1 || s.maxBody > store.MaxMaxBody:
		return fmt.Errorf("-max-body %d: want 1..%d", s.maxBody, store.MaxMaxBody)
	case s.routeTTL < time.Second:
		return fmt.Errorf("-route-ttl %v: want at least 1s", s.routeTTL)
	case s.registryTTL < time.Second:
		return fmt.Errorf("-registry-ttl %v: want at least 1s", s.registryTTL)
	}
	return nil
}

func (s *settings) sqlitePath() string { return filepath.Join(s.dataDir, "dataproxy", "gochat.db") }

func main() { os.Exit(run()) }

func run() int {
	fset := flag.NewFlagSet("dataproxy", flag.ExitOnError)
	var common svc.Common
	common.Register(fset, "127.0.0.1:9191")
	var cfg settings
	cfg.register(fset)
	svc.Parse(fset, os.Args[1:])
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	log, err := common.Logger("dataproxy")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	if cfg.checkSchema {
		return checkSchema(cfg, log)
	}
	if err := serve(cfg, common, log); err != nil {
		log.Error("dataproxy stopped", "err", err)
		return 1
	}
	return 0
}

func serve(cfg settings, common svc.Common, log *slog.Logger) error {
	ctx, stop := obs.SignalContext()
	defer stop()
	reg := obs.NewRegistry()
	admin, err := obs.StartAdmin(common.AdminListen, reg, log)
	if err != nil {
		return err
	}
	defer admin.Close()

	startCtx, cancel := context.WithTimeout(ctx, cfg.startupTimeout)
	defer cancel()
	st, err := openStore(startCtx, cfg, log, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Ready(startCtx); err != nil {
		return err
	}

	rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, Password: cfg.redisPassword, DB: cfg.redisDB})
	defer rdb.Close()
	if err := retry(startCtx, log, "redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() }); err != nil {
		return err
	}
	rt, err := routes.New(routes.Config{Prefix: cfg.redisPrefix, TTL: cfg.routeTTL}, rdb)
	if err != nil {
		return err
	}
	h, err := handler.New(handler.Config{}, st, rt, reg, log)
	if err != nil {
		return err
	}

	opts, err := rpcx.ServerOptions(rpcx.ServerConfig{
		Service: rpcx.DataProxyService, Listen: cfg.listen, Advertise: cfg.advertise,
		Etcd: common.EtcdEndpoints(), LeaseTTL: cfg.registryTTL,
		// Ready once listed in etcd: before that no client can find us.
		OnRegistered: func() { admin.SetReady(true) },
	})
	if err != nil {
		return err
	}
	svr := dpsvc.NewServer(h, opts...)
	runErr := make(chan error, 1)
	go func() { runErr <- svr.Run() }()
	if err := waitListening(ctx, cfg.listen, runErr); err != nil {
		return err
	}
	log.Info("dataproxy serving", "listen", cfg.listen, "store", cfg.store, "admin", admin.Addr())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-runErr:
		admin.SetReady(false)
		return fmt.Errorf("kitex server: %w", err)
	}
	admin.SetReady(false)
	if err := svr.Stop(); err != nil {
		log.Warn("kitex stop", "err", err)
	}
	return nil
}

// openStore opens the configured store; MySQL is retried until ctx ends,
// as it may still be starting.
func openStore(ctx context.Context, cfg settings, log *slog.Logger, readOnly bool) (*store.SQLStore, error) {
	opts := store.Options{MaxBody: cfg.maxBody}
	if cfg.store == "sqlite" {
		return store.OpenSQLite(store.SQLiteConfig{Path: cfg.sqlitePath(), Sync: cfg.sqliteSync, ReadOnly: readOnly, Options: opts}, log)
	}
	mc := store.MySQLConfig{DSN: cfg.mysqlDSN, MaxOpen: cfg.mysqlMaxOpen, MaxIdle: cfg.mysqlMaxIdle, CreateDatabase: !readOnly, Options: opts}
	if readOnly {
		return store.OpenMySQL(ctx, mc, log)
	}
	var st *store.SQLStore
	err := retry(ctx, log, "mysql", func(ctx context.Context) error {
		var err error
		st, err = store.OpenMySQL(ctx, mc, log)
		return err
	})
	return st, err
}

// retry calls fn until it succeeds or ctx ends, backing off up to 5 s.
func retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(tctx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("waiting for "+what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// waitListening returns once the Kitex server accepts connections on
// listen (so /readyz tells the truth), or the server failed to start.
func waitListening(ctx context.Context, listen string, runErr <-chan error) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case err := <-runErr:
			return fmt.Errorf("kitex server: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kitex server not accepting on %s: %w", addr, err)
		}
	}
}

// checkSchema prints the schema version: exit 0 current, 1 not, 2 unknown.
func checkSchema(cfg settings, log *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	latest, err := store.LatestVersion(cfg.store)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	st, err := openStore(ctx, cfg, log, true)
	if errors.Is(err, store.ErrNoDatabase) {
		fmt.Printf("%v; schema version 0, latest %d: not current\n", err, latest)
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	defer st.Close()
	cur, latest, err := st.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	if cur == latest {
		fmt.Printf("%s: schema version %d, latest %d: current\n", cfg.store, cur, latest)
		return 0
	}
	fmt.Printf("%s: schema version %d, latest %d: not current\n", cfg.store, cur, latest)
	return 1
}
