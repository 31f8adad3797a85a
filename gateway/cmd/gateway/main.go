// Command gateway holds client WebSocket connections for GoChat: it checks
// tokens, registers connections with logic, produces client sends to Kafka
// and pushes logic's downstream records to the connections it holds.
//
// Every flag can also be set in a config file (-config) or the environment
// (GOCHAT_<FLAG>, e.g. GOCHAT_TOKEN_SECRET).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gochat-im/gochat/gateway/internal/app"
	"github.com/gochat-im/gochat/gateway/internal/rlimit"
	"github.com/gochat-im/gochat/gateway/internal/server"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/svc"
)

type options struct {
	common  svc.Common
	sc      server.Config
	cfg     app.Config
	secrets string
	gcPct   int
}

func main() {
	var o options
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	o.register(fs)
	svc.Parse(fs, os.Args[1:])
	// Only a logger that cannot be built is reported on plain stderr;
	// everything after it goes through the logger, as in task and
	// dataproxy.
	log, err := o.common.Logger("gateway")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	if err := run(o, log); err != nil {
		log.Error("gateway failed", "err", err)
		os.Exit(1)
	}
}

func (o *options) register(fs *flag.FlagSet) {
	sc, cfg := &o.sc, &o.cfg
	o.common.Register(fs, "127.0.0.1:9180")
	o.common.RegisterKafka(fs)
	o.common.RegisterGC(fs, 0) // memory per connection first; see docs/TUNING.md
	fs.StringVar(&sc.ID, "id", defaultID(), "gateway instance id (names its downstream topic and routes)")
	fs.StringVar(&sc.Listen, "listen", "127.0.0.1:8080", "WebSocket listen address host:port")
	fs.StringVar(&cfg.Advertise, "advertise", "", "address published in etcd (default: the listen address)")
	fs.StringVar(&sc.Path, "ws-path", "/ws", "WebSocket path")
	fs.IntVar(&sc.Shards, "shards", 64, "connection table shards (power of two)")
	fs.StringVar(&o.secrets, "token-secret", "", "HMAC token secret(s), comma-separated, current first (REQUIRED; usually GOCHAT_TOKEN_SECRET)")
	fs.DurationVar(&sc.Heartbeat, "heartbeat", 30*time.Second, "heartbeat interval advertised to clients")
	fs.DurationVar(&sc.IdleTimeout, "idle-timeout", 0, "close connections silent this long (default 3x -heartbeat)")
	fs.DurationVar(&sc.HandshakeTimeout, "handshake-timeout", 5*time.Second, "drop connections that have not upgraded in this time")
	fs.DurationVar(&sc.WriteTimeout, "write-timeout", 10*time.Second, "disconnect a client whose socket stays full this long")
	fs.IntVar(&sc.WriteQueue, "write-queue", 256, "frames that may wait for one client whose socket is backed up before it is disconnected as too slow")
	fs.IntVar(&sc.WriteQueueBytes, "write-queue-bytes", server.DefaultWriteQueueBytes, "bytes that may wait for one client whose socket is backed up (queued and in the output buffer) before it is disconnected as too slow")
	fs.IntVar(&sc.MaxFrame, "max-frame", 65536, "largest frame or message payload a client may send, bytes")
	fs.IntVar(&sc.MaxBody, "max-body", 4096, "largest message body, bytes")
	fs.DurationVar(&sc.RegisterFlush, "register-flush", 5*time.Millisecond, "how long a new connection waits for others to share its Connect call to logic (and so for its hello); at most 1s")
	fs.IntVar(&sc.RegisterBatch, "register-batch", 500, "most connections per Connect or Disconnect call to logic (1-1000)")
	fs.DurationVar(&sc.RouteRefresh, "route-refresh", 30*time.Second, "interval of full route re-registration with logic (negative disables)")
	fs.DurationVar(&cfg.RegistryTTL, "registry-ttl", 10*time.Second, "lease TTL of the gateway's etcd registration")
	fs.IntVar(&cfg.DownPartitions, "down-partitions", 4, "partitions of this gateway's downstream topic when created")
	fs.IntVar(&cfg.UpPartitions, "up-partitions", 16, "partitions of the upstream topic if this gateway creates it (the first service to start does; give logic's -up-partitions the same value)")
	fs.IntVar(&sc.Workers, "workers", 64, "goroutines serving the calls to logic that clients' requests make (sync, conversations, group operations, the cursor behind pong)")
	fs.IntVar(&sc.Writers, "writers", 1024, "most goroutines writing to clients; beyond 4 per CPU they start only while others wait on clients that do not read")
	fs.IntVar(&sc.MsgRate, "max-msg-rate", 1000, "most messages per second one connection may send (more get a rate_limited error); negative disables")
	fs.IntVar(&o.gcPct, "gc-percent", 25, "Go GC target percentage (like GOGC): lower keeps memory per idle connection closer to the live heap at some CPU cost; 0 leaves GOGC/Go's default")
	fs.StringVar(&cfg.DebugListen, "pprof-listen", "", "serve Go's /debug/pprof profiles on this address (empty: off; keep it on loopback)")
	fs.StringVar(&cfg.DebugListen, "debug-listen", "", "the former name of -pprof-listen")
	fs.IntVar(&cfg.DropPushes, "drop-pushes", 0, "TESTS ONLY: drop the first N message pushes read from the downstream topic, as if lost (clients must notice by the heartbeat cursor)")
	fs.BoolVar(&cfg.Standalone, "standalone", false, "BENCHMARKS ONLY: accept every connection without registering it with logic (no logic service needed; sync/conversations answer unavailable)")
}

func run(o options, log *slog.Logger) error {
	sc, cfg := o.sc, o.cfg
	if soft, hard, err := rlimit.RaiseNoFile(); err != nil {
		log.Warn("could not raise the open-file limit", "soft", soft, "hard", hard, "err", err)
	} else {
		log.Info("open-file limit", "soft", soft, "hard", hard)
	}
	if o.gcPct > 0 {
		debug.SetGCPercent(o.gcPct)
	}
	// Small netpoll buffers keep idle connections cheap; see TuneNetpoll.
	if err := server.TuneNetpoll(); err != nil {
		return err
	}
	for _, s := range config.List(o.secrets) {
		cfg.TokenSecrets = append(cfg.TokenSecrets, []byte(s))
	}
	var err error
	if cfg.Kafka, err = o.common.KafkaCommon(); err != nil {
		return err
	}
	cfg.Server = sc
	cfg.Etcd = o.common.EtcdEndpoints()
	cfg.AdminListen = o.common.AdminListen

	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := obs.SignalContext()
	defer stop()
	o.common.StartGCFloor(ctx)
	if err := a.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return a.Shutdown(sctx)
}

// defaultID derives an instance id from the host name, or "gw1".
func defaultID() string {
	h, err := os.Hostname()
	if err != nil {
		return "gw1"
	}
	id := strings.Map(func(r rune) rune {
		if r < 128 && ids.ValidDevice(string(r)) {
			return r
		}
		return '-'
	}, h)
	id = "gw-" + id
	if len(id) > ids.MaxIDLen {
		id = id[:ids.MaxIDLen]
	}
	if !ids.ValidDevice(id) {
		return "gw1"
	}
	return id
}
