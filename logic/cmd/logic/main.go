// Command logic runs GoChat's business core: the Kitex Logic service and
// the upstream consumer. Settings come from flags, GOCHAT_* environment
// variables or a config file (see pkg/config); run with -h for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	dpapi "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/logic/internal/handler"
	"github.com/gochat-im/gochat/logic/internal/pipeline"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/discovery"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/rpcx"
	"github.com/gochat-im/gochat/pkg/svc"
)

type options struct {
	common         svc.Common
	listen         string
	advertise      string
	registryTTL    time.Duration
	adminSecret    string
	recallSecret   string
	tokenSecret    string
	tokenTTL       time.Duration
	routeTTL       time.Duration
	group          string
	maxBatch       int
	workers        int
	maxInflight    int
	upPartitions   int
	taskPartitions int
	rpcTimeout     time.Duration
	loginPolicy    string
	maxBody        int
	recallWindow   time.Duration
	archive        bool
	moderate       bool
	pprofListen    string

	// policy is -login-policy parsed by check.
	policy handler.LoginPolicy
}

func main() {
	var o options
	fs := flag.NewFlagSet("logic", flag.ExitOnError)
	o.register(fs)
	svc.Parse(fs, os.Args[1:])
	// Settings are checked before the logger exists, and refused with
	// status 2 like a bad flag, as task and dataproxy do.
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "logic:", err)
		os.Exit(2)
	}
	log, err := o.common.Logger("logic")
	if err != nil {
		fmt.Fprintln(os.Stderr, "logic:", err)
		os.Exit(2)
	}
	if err := run(o, log); err != nil {
		log.Error("logic failed", "err", err)
		os.Exit(1)
	}
}

func (o *options) register(fs *flag.FlagSet) {
	o.common.Register(fs, "127.0.0.1:9190")
	o.common.RegisterKafka(fs)
	o.common.RegisterGC(fs, 64)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8900", "Kitex listen address")
	fs.StringVar(&o.advertise, "advertise", "", "address published in etcd (default: the listen address)")
	fs.DurationVar(&o.registryTTL, "registry-ttl", 10*time.Second, "etcd lease TTL: how long a dead instance stays listed (at least 1s)")
	fs.StringVar(&o.adminSecret, "admin-secret", "", "secret app backends present to IssueToken, CreateUsers, Send, Recall and the group calls (required; use GOCHAT_ADMIN_SECRET)")
	fs.StringVar(&o.recallSecret, "recall-secret", "", "a second secret Recall accepts, and nothing else: give it to the task service's moderation job instead of the admin secret (use GOCHAT_RECALL_SECRET)")
	fs.StringVar(&o.tokenSecret, "token-secret", "", "HMAC secret(s) for client tokens, comma-separated, the first signs (required; use GOCHAT_TOKEN_SECRET)")
	fs.DurationVar(&o.tokenTTL, "token-ttl", 24*time.Hour, "default lifetime of issued tokens (more than 0)")
	fs.DurationVar(&o.routeTTL, "route-ttl", 10*time.Minute, "lifetime of a route in Redis unless the gateway refreshes it (1s to 24h, what dataproxy accepts)")
	fs.StringVar(&o.group, "consumer-group", "gochat.logic", "Kafka consumer group of the upstream topic")
	fs.IntVar(&o.maxBatch, "max-batch", pipeline.DefaultMaxBatch, fmt.Sprintf("most upstream records persisted in one dataproxy call (1 to %d, what dataproxy takes)", dpapi.MAX_BATCH))
	fs.IntVar(&o.workers, "workers", pipeline.DefaultWorkers, "upstream batches prepared at once (each partition always on the same worker; at least 1)")
	fs.IntVar(&o.maxInflight, "max-inflight", pipeline.DefaultMaxInflight, "batches per worker whose outputs Kafka has not acknowledged yet (at least 1)")
	fs.IntVar(&o.upPartitions, "up-partitions", 16, "partitions of the upstream topic when logic creates it (at least 1)")
	fs.IntVar(&o.taskPartitions, "task-partitions", 8, "partitions of the task topic when logic creates it (at least 1)")
	fs.StringVar(&o.loginPolicy, "login-policy", "phone=single,pad=single,desktop=single",
		"per device kind (the device id up to its first '-'), single (a new login kicks the older connection) or multi; unlisted kinds are multi")
	fs.IntVar(&o.maxBody, "max-body", 4096, "largest message body the Send RPC accepts, bytes (at least 1; gateways have their own -max-body)")
	fs.DurationVar(&o.recallWindow, "recall-window", pipeline.DefaultRecallWindow, "how long after sending a message its sender may recall it (not negative)")
	fs.BoolVar(&o.archive, "archive", false, "also emit every stored message to the task topic for the task service's archive job (task -archive-dir)")
	fs.BoolVar(&o.moderate, "moderate", false, "also emit every message sent to the task topic for the task service's moderation job (task -moderation-url or -moderation-words), which recalls what it rejects")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "address of a net/http/pprof server for profiling (off by default; keep it on loopback)")
	fs.DurationVar(&o.rpcTimeout, "rpc-timeout", rpcx.DefaultTimeout, "timeout of one dataproxy call (0: "+rpcx.DefaultTimeout.String()+"; not negative)")
}

// check refuses settings that would only fail later, call by call, or
// after logic has waited for etcd and Kafka; a count or a duration that
// has no meaning is refused rather than replaced by a default. It also
// parses -login-policy into o.policy.
func (o *options) check() error {
	if len(config.List(o.tokenSecret)) == 0 || o.adminSecret == "" {
		return errors.New("both -token-secret and -admin-secret are required")
	}
	switch {
	case o.tokenTTL <= 0:
		return fmt.Errorf("-token-ttl %v: must be more than 0", o.tokenTTL)
	case o.routeTTL < handler.MinRouteTTL || o.routeTTL > handler.MaxRouteTTL:
		// dataproxy takes whole seconds up to a day, and 0 as its default.
		return fmt.Errorf("-route-ttl %v: must be from %v to %v (what dataproxy accepts)", o.routeTTL, handler.MinRouteTTL, handler.MaxRouteTTL)
	case o.recallWindow < 0:
		return fmt.Errorf("-recall-window %v: must not be negative", o.recallWindow)
	case o.registryTTL < time.Second:
		// etcd leases count whole seconds.
		return fmt.Errorf("-registry-ttl %v: must be at least 1s", o.registryTTL)
	case o.rpcTimeout < 0:
		// Kitex would fail every dataproxy call at once.
		return fmt.Errorf("-rpc-timeout %v: must not be negative (0 means %v)", o.rpcTimeout, rpcx.DefaultTimeout)
	case o.maxBatch < 1 || o.maxBatch > dpapi.MAX_BATCH:
		// dataproxy would refuse a larger batch whole, and logic would
		// answer every send in it with an error.
		return fmt.Errorf("-max-batch %d: must be from 1 to %d (what dataproxy takes in one call)", o.maxBatch, dpapi.MAX_BATCH)
	}
	if err := config.Positive(
		config.Setting[int]{Name: "-workers", Value: o.workers},
		config.Setting[int]{Name: "-max-inflight", Value: o.maxInflight},
		config.Setting[int]{Name: "-up-partitions", Value: o.upPartitions},
		config.Setting[int]{Name: "-task-partitions", Value: o.taskPartitions},
		config.Setting[int]{Name: "-max-body", Value: o.maxBody},
	); err != nil {
		return err
	}
	// The addresses are resolved only after etcd and Kafka have answered;
	// one that cannot be an address at all is refused now.
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("-listen %q: want host:port (%v)", o.listen, err)
	}
	if _, _, err := net.SplitHostPort(o.advertise); o.advertise != "" && err != nil {
		return fmt.Errorf("-advertise %q: want host:port (%v)", o.advertise, err)
	}
	policy, err := handler.ParseLoginPolicy(o.loginPolicy)
	if err != nil {
		return fmt.Errorf("-login-policy: %w", err)
	}
	o.policy = policy
	return nil
}

// run serves until a signal or a failure; o has passed check.
func run(o options, log *slog.Logger) error {
	secrets := config.List(o.tokenSecret)
	// -kafka-config is read before anything is contacted.
	kc, err := o.common.KafkaCommon()
	if err != nil {
		return err
	}
	ctx, stop := obs.SignalContext()
	defer stop()
	o.common.StartGCFloor(ctx)

	reg := obs.NewRegistry()
	admin, err := obs.StartAdmin(o.common.AdminListen, reg, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	if o.pprofListen != "" {
		obs.StartPprof(o.pprofListen, log)
	}

	etcd, err := discovery.NewClient(o.common.EtcdEndpoints())
	if err != nil {
		return err
	}
	defer etcd.Close()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	gateways := discovery.Watch(watchCtx, etcd, log)

	copts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.DataProxyService, Etcd: o.common.EtcdEndpoints(), Timeout: o.rpcTimeout, Caller: rpcx.LogicService})
	if err != nil {
		return err
	}
	dp, err := dataproxy.NewClient(rpcx.DataProxyService, copts...)
	if err != nil {
		return fmt.Errorf("dataproxy client: %w", err)
	}
	userCache := users.New(dp, 10*time.Minute, 1<<20)

	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = kafkax.EnsureTopics(tctx, kc,
		kafkax.TopicSpec{Name: kafkax.TopicUp, Partitions: o.upPartitions},
		kafkax.TopicSpec{Name: kafkax.TopicTask, Partitions: o.taskPartitions})
	cancel()
	if err != nil {
		return err
	}
	// Logic's records are batched already (one record per gateway and
	// partition for a whole batch of messages): the producers' 1 ms linger
	// would only delay them. -kafka-config linger.ms=... still wins.
	prod, err := kafkax.NewProducer(kc.WithLinger(0), log)
	if err != nil {
		return err
	}
	defer prod.Close()

	select {
	case <-gateways.Ready():
	case <-ctx.Done():
		return nil
	}
	router := routing.New(dp, gateways)
	proc := pipeline.NewProcessor(dp, userCache, router, prod, pipeline.NewMetrics(reg), log)
	proc.SetRecallWindow(o.recallWindow)
	proc.SetArchive(o.archive)
	proc.SetModerate(o.moderate)
	cons, err := pipeline.NewConsumer(pipeline.ConsumerConfig{Kafka: kc, Group: o.group, MaxBatch: o.maxBatch,
		Workers: o.workers, MaxInflight: o.maxInflight}, proc, prod, log)
	if err != nil {
		return err
	}

	h := handler.New(handler.Config{
		AdminSecret: o.adminSecret, RecallSecret: o.recallSecret, TokenSecret: []byte(secrets[0]), TokenTTL: o.tokenTTL, RouteTTL: o.routeTTL,
		LoginPolicy: o.policy, MaxBody: o.maxBody,
	}, dp, userCache, router, prod, log)
	sopts, err := rpcx.ServerOptions(rpcx.ServerConfig{Service: rpcx.LogicService, Listen: o.listen, Advertise: o.advertise,
		Etcd: o.common.EtcdEndpoints(), LeaseTTL: o.registryTTL,
		// Ready once listed in etcd: before that gateways cannot find us.
		OnRegistered: func() { admin.SetReady(true) }})
	if err != nil {
		return err
	}
	srv := logicsvc.NewServer(h, sopts...)

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := cons.Run(ctx); err != nil {
			errc <- fmt.Errorf("upstream consumer: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Run(); err != nil {
			errc <- fmt.Errorf("kitex server: %w", err)
		}
	}()
	log.Info("logic started", "listen", o.listen, "admin", admin.Addr())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		stop()
	}
	log.Info("logic stopping")
	admin.SetReady(false)
	if err := srv.Stop(); err != nil {
		log.Warn("kitex stop", "err", err)
	}
	wg.Wait()
	log.Info("logic stopped")
	return runErr
}
