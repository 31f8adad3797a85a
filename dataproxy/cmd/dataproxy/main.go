// Command dataproxy serves GoChat's storage API over Kitex: messages,
// conversations, users, groups and client cursors in SQLite (default) or
// MySQL, sharded over several databases and tables if configured
// (docs/DATAPROXY.md), and in Redis the online route table, the groups'
// route sets and the inbox cursors. It registers itself in etcd as
// gochat.dataproxy; with -etcd "" it serves without registering (for
// benchmarks and tools that dial it directly).
//
// Every flag can also come from a config file (-config) or the environment
// (GOCHAT_<FLAG_NAME>, e.g. GOCHAT_REDIS_PASSWORD, GOCHAT_SHARD_DBS); keep
// secrets in the environment. -check-schema prints every shard database's
// schema version and layout and exits 0 if all are current and match the
// configuration, 1 if not, 2 if one could not be read; it changes nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cloudwego/kitex/pkg/remote/codec"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/inbox"
	"github.com/gochat-im/gochat/dataproxy/internal/repair"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/rpcx"
	"github.com/gochat-im/gochat/pkg/svc"
)

func main() { os.Exit(run()) }

func run() int {
	fset := flag.NewFlagSet("dataproxy", flag.ExitOnError)
	var common svc.Common
	common.Register(fset, "127.0.0.1:9191")
	common.RegisterGC(fset, 64)
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
	common.StartGCFloor(ctx)
	reg := obs.NewRegistry()
	admin, err := obs.StartAdmin(common.AdminListen, reg, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	if cfg.pprofListen != "" {
		obs.StartPprof(cfg.pprofListen, log)
	}

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
	if err := store.RegisterMetrics(reg, st); err != nil {
		return err
	}

	rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, Password: cfg.redisPassword, DB: cfg.redisDB, PoolSize: cfg.redisPool})
	defer rdb.Close()
	if err := retry(startCtx, log, "redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() }); err != nil {
		return err
	}
	// Cache keys whose update failed after a commit are deleted when Redis
	// answers again (package repair).
	rq, err := repair.New(repair.Config{}, rdb, log)
	if err != nil {
		return err
	}
	defer rq.Close()
	if err := rq.Register(reg); err != nil {
		return err
	}
	rt, err := routes.New(routes.Config{Prefix: cfg.redisPrefix, TTL: cfg.routeTTL, Groups: st, Repair: rq, Log: log}, rdb)
	if err != nil {
		return err
	}
	ib, err := inbox.New(inbox.Config{Prefix: cfg.redisPrefix, Repair: rq}, rdb, st)
	if err != nil {
		return err
	}
	h, err := handler.New(handler.Config{MaxRequestBytes: cfg.maxRequestBytes}, st, rt, ib, reg, log)
	if err != nil {
		return err
	}

	registered := len(common.EtcdEndpoints()) > 0
	// Ready once listed in etcd: before that no client can find us.
	opts, err := serverOptions(cfg, common, func() { admin.SetReady(true) })
	if err != nil {
		return err
	}
	svr := dpsvc.NewServer(h, opts...)
	runErr := make(chan error, 1)
	go func() { runErr <- svr.Run() }()
	if err := waitListening(ctx, cfg.listen, runErr); err != nil {
		return err
	}
	if !registered {
		admin.SetReady(true) // clients dial the address directly
	}
	log.Info("dataproxy serving", "listen", cfg.listen, "store", cfg.store, "layout", st.Layout().String(), "admin", admin.Addr())

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
	// Write the inbox updates the last appends queued before Redis closes.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ib.Settle(sctx)
	cancel()
	return nil
}

// serverOptions are rpcx's (etcd registration, TTHeader for business
// errors) plus a bound on the request size, which the handler's own limit
// stays well below so that an oversized call gets a business error. With no
// etcd endpoints the server is not registered.
func serverOptions(cfg settings, common svc.Common, onRegistered func()) ([]server.Option, error) {
	limit := server.WithCodec(codec.NewDefaultCodecWithSizeLimit(2*cfg.maxRequestBytes + 1<<20))
	if len(common.EtcdEndpoints()) > 0 {
		opts, err := rpcx.ServerOptions(rpcx.ServerConfig{
			Service: rpcx.DataProxyService, Listen: cfg.listen, Advertise: cfg.advertise,
			Etcd: common.EtcdEndpoints(), LeaseTTL: cfg.registryTTL, OnRegistered: onRegistered,
		})
		return append(opts, limit), err
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.listen, err)
	}
	return []server.Option{
		server.WithServiceAddr(addr),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: rpcx.DataProxyService}),
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
		server.WithExitWaitTime(2 * time.Second),
		limit,
	}, nil
}

// openStore opens the configured store; MySQL is retried until ctx ends,
// as it may still be starting.
func openStore(ctx context.Context, cfg settings, log *slog.Logger, readOnly bool) (*store.SQLStore, error) {
	if cfg.store == "sqlite" {
		return store.OpenSQLite(cfg.sqliteConfig(readOnly), log)
	}
	mc := cfg.mysqlConfig(readOnly)
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

// checkSchema prints each shard database's schema version and layout:
// exit 0 all current, 1 not, 2 unknown.
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
	shards, err := st.CheckSchema(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataproxy:", err)
		return 2
	}
	code := 0
	for _, sh := range shards {
		layout := sh.Layout
		if layout == "" {
			layout = "no layout recorded"
		}
		verdict := "current"
		if sh.Problem != "" {
			verdict, code = "NOT CURRENT: "+sh.Problem, 1
		}
		fmt.Printf("%s shard %d %s: schema version %d, latest %d; %s; %s\n", cfg.store, sh.Shard, sh.Name, sh.Version, sh.Latest, layout, verdict)
	}
	return code
}
