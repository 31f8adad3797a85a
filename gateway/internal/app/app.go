// Package app assembles a running gateway from its configuration: Kafka
// topics, producer and downstream consumer, the logic client, the WebSocket
// server, the etcd registration and the admin endpoint, and takes them down
// in the right order.
//
// Start order: topics, producer, logic client, downstream consumer (reading
// from the end of the topic), server, etcd registration, ready. Shutdown order: not ready, deregister from etcd (so
// logic stops routing here), stop accepting and close every connection with
// 1001, send the last Disconnects, stop the consumer, flush and close the
// producer.
//
// Concurrency: Start and Shutdown are called once each, from one goroutine.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat-im/gochat/gateway/internal/downstream"
	"github.com/gochat-im/gochat/gateway/internal/logicrpc"
	"github.com/gochat-im/gochat/gateway/internal/metrics"
	"github.com/gochat-im/gochat/gateway/internal/server"
	"github.com/gochat-im/gochat/gateway/internal/standalone"
	"github.com/gochat-im/gochat/gateway/internal/upstream"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/discovery"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

// Config is the gateway's configuration.
type Config struct {
	Server server.Config
	// Advertise is the address published in etcd; default the listener's.
	Advertise string
	// TokenSecrets verify access tokens; the first is current, the rest are
	// accepted during rotation.
	TokenSecrets [][]byte
	Etcd         []string
	Kafka        kafkax.Common
	// DownPartitions is the partition count of this gateway's downstream
	// topic when it is created.
	DownPartitions int
	// UpPartitions is the partition count of the upstream topic when this
	// gateway is the first to need it (logic creates it too, with its own
	// -up-partitions: give both the same value).
	UpPartitions int
	// RegistryTTL is the lease of the etcd registration.
	RegistryTTL time.Duration
	AdminListen string
	// DebugListen, if set, serves Go's /debug/pprof profiles there (keep
	// it on loopback: profiles reveal internals).
	DebugListen string
	// Standalone replaces the logic service with internal/standalone, for
	// load tests of the gateway alone. Never set it in production.
	Standalone bool
	// DropPushes is for tests only (downstream.ConsumerConfig.DropPushes).
	DropPushes int
}

// App is a running gateway.
type App struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	admin    *obs.Admin
	producer *kafkax.Producer
	srv      *server.Server
	consumer *downstream.Consumer
	stopCons context.CancelFunc
	etcd     *clientv3.Client
	regn     *discovery.Registration
	debug    *http.Server
}

// New checks cfg; Start brings the gateway up.
func New(cfg Config, log *slog.Logger) (*App, error) {
	if len(cfg.TokenSecrets) == 0 {
		return nil, errors.New("no token secret: set -token-secret or GOCHAT_TOKEN_SECRET")
	}
	if cfg.Server.MaxRecord == 0 {
		// -max-body must fit in one record the producer takes.
		n, err := messageMaxBytes(cfg.Kafka)
		if err != nil {
			return nil, err
		}
		cfg.Server.MaxRecord = n
	}
	if err := cfg.Server.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Etcd) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	if cfg.DownPartitions <= 0 {
		return nil, fmt.Errorf("down partitions %d: want at least 1", cfg.DownPartitions)
	}
	if cfg.UpPartitions <= 0 {
		return nil, fmt.Errorf("up partitions %d: want at least 1", cfg.UpPartitions)
	}
	if cfg.RegistryTTL < time.Second {
		return nil, fmt.Errorf("registry ttl %v: want at least 1s", cfg.RegistryTTL)
	}
	return &App{cfg: cfg, log: log, reg: obs.NewRegistry()}, nil
}

// Start brings the gateway up; on error, what was started is stopped.
func (a *App) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = a.Shutdown(sctx)
		}
	}()
	if a.admin, err = obs.StartAdmin(a.cfg.AdminListen, a.reg, a.log); err != nil {
		return err
	}
	if a.cfg.DebugListen != "" {
		if a.debug, err = startDebug(a.cfg.DebugListen, a.log); err != nil {
			return err
		}
	}
	verifier, err := auth.NewVerifier(a.cfg.TokenSecrets...)
	if err != nil {
		return err
	}
	id := a.cfg.Server.ID
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafkax.EnsureTopics(tctx, a.cfg.Kafka,
		kafkax.TopicSpec{Name: kafkax.TopicUp, Partitions: a.cfg.UpPartitions},
		kafkax.TopicSpec{Name: kafkax.DownTopic(id), Partitions: a.cfg.DownPartitions},
	)
	cancel()
	if err != nil {
		return err
	}
	if a.producer, err = kafkax.NewProducer(a.cfg.Kafka, a.log); err != nil {
		return err
	}
	sink, err := upstream.NewKafka(a.producer)
	if err != nil {
		return err
	}
	var lc server.Logic
	if a.cfg.Standalone {
		a.log.Warn("STANDALONE benchmark mode: routes are not registered with logic; messages sent through logic will not reach this gateway's clients")
		lc = standalone.Logic{}
	} else if lc, err = logicrpc.New(rpcx.ClientConfig{Etcd: a.cfg.Etcd}); err != nil {
		return err
	}
	m := metrics.New(a.reg)
	if a.srv, err = server.New(a.cfg.Server, server.Deps{Logic: lc, Up: sink, Verifier: verifier, Metrics: m, Log: a.log}); err != nil {
		return err
	}
	// Order matters: the consumer reads from the end of the downstream
	// topic before anything can be addressed to this gateway, and the
	// gateway is listed in etcd (logic routes only to listed gateways)
	// before the first client can connect.
	a.consumer, err = downstream.NewConsumer(downstream.ConsumerConfig{GatewayID: id, Kafka: a.cfg.Kafka, DropPushes: a.cfg.DropPushes},
		a.srv.Fanout(), m.DownstreamError.Inc, a.log)
	if err != nil {
		return err
	}
	cctx, ccancel := context.WithCancel(context.Background())
	a.stopCons = ccancel
	go a.consumer.Run(cctx)

	if a.etcd, err = discovery.NewClient(a.cfg.Etcd); err != nil {
		return err
	}
	if err = a.srv.Start(); err != nil {
		a.srv = nil
		return err
	}
	adv := a.cfg.Advertise
	if adv == "" {
		adv = a.srv.Addr().String()
		if host, _, _ := net.SplitHostPort(adv); host == "" || net.ParseIP(host).IsUnspecified() {
			a.log.Warn("listening on all interfaces without -advertise; clients may not reach the published address", "addr", adv)
		}
	}
	a.regn, err = discovery.Register(ctx, a.etcd, discovery.Gateway{
		ID: id, Addr: adv, Topic: kafkax.DownTopic(id), StartedAt: time.Now().Unix(),
		Batches: true, DownPartitions: a.consumer.Partitions(),
	}, a.cfg.RegistryTTL, a.log)
	if err != nil {
		return err
	}
	a.admin.SetReady(true)
	a.log.Info("gateway ready", "gateway", id, "advertise", adv, "topic", kafkax.DownTopic(id), "admin", a.admin.Addr())
	return nil
}

// Addr is the WebSocket listener's address (nil before Start).
func (a *App) Addr() net.Addr {
	if a.srv == nil {
		return nil
	}
	return a.srv.Addr()
}

// Shutdown takes the gateway down; see the package comment for the order.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	a.admin.SetReady(false)
	if a.regn != nil {
		a.regn.Close()
		a.regn = nil
	}
	if a.srv != nil {
		if err := a.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: %w", err))
		}
		a.srv = nil
	}
	if a.consumer != nil {
		a.stopCons()
		select {
		case <-a.consumer.Done():
		case <-ctx.Done():
			errs = append(errs, errors.New("downstream consumer did not stop in time"))
		}
		a.consumer = nil
	}
	if a.producer != nil {
		a.producer.Close()
		a.producer = nil
	}
	if a.etcd != nil {
		_ = a.etcd.Close()
		a.etcd = nil
	}
	if a.debug != nil {
		_ = a.debug.Close()
		a.debug = nil
	}
	a.admin.Close()
	return errors.Join(errs...)
}

// startDebug serves the pprof handlers on addr.
func startDebug(addr string, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug server", "err", err)
		}
	}()
	log.Info("pprof endpoints enabled", "addr", ln.Addr().String())
	return srv, nil
}

// messageMaxBytes is the producer's message.max.bytes: the value given in
// the Kafka settings (-kafka-config), or librdkafka's default.
func messageMaxBytes(c kafkax.Common) (int, error) {
	v, ok := c.Extra["message.max.bytes"]
	if !ok {
		return server.DefaultMaxRecord, nil
	}
	var (
		n   int
		err error
	)
	switch x := v.(type) {
	case int:
		n = x
	case int64:
		n = int(x)
	case string:
		n, err = strconv.Atoi(strings.TrimSpace(x))
	default:
		err = fmt.Errorf("type %T", v)
	}
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("kafka config message.max.bytes=%v: want a positive number of bytes", v)
	}
	return n, nil
}
