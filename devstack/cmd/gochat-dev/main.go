// Command gochat-dev runs a complete GoChat on one machine with no servers
// installed: embedded etcd, Kafka-protocol and Redis-protocol servers in
// this process, and the gateway, logic, task and dataproxy binaries as
// supervised child processes. `make run` starts it. All state lives under
// -data-dir, so stopping (Ctrl-C) and starting again keeps every message.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/svc"
)

func main() {
	fs := flag.NewFlagSet("gochat-dev", flag.ExitOnError)
	var (
		cfg    stack.Config
		wsPort int
		quiet  bool
		logLvl string
		pprofL string
		gcMin  int
	)
	exe, _ := os.Executable()
	fs.StringVar(&cfg.BinDir, "bin-dir", filepath.Dir(exe), "directory holding the service binaries")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "directory for all state (SQL store, Kafka log, etcd)")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address every server binds")
	fs.IntVar(&wsPort, "ws-port", 8080, "WebSocket port of the first gateway (0: any free port)")
	fs.IntVar(&cfg.Gateways, "gateways", 1, "number of gateway processes")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "URL the task service POSTs offline pushes to")
	fs.StringVar(&cfg.KafkaConfig, "kafka-config", "", "extra librdkafka properties for every service")
	fs.IntVar(&cfg.UpPartitions, "up-partitions", stack.DefaultUpPartitions, "partitions of the upstream topic when it is created (logic's and the gateways' -up-partitions; a topic kept in -data-dir keeps its count)")
	fs.Func("service-flags", `extra flags for one kind of service, "svc=-flag value ..."; repeat or separate with ';' (svc: gateway, logic, task, dataproxy)`, func(v string) error {
		for _, part := range strings.Split(v, ";") {
			svc, args, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || svc == "" {
				return fmt.Errorf("want svc=-flag value, got %q", part)
			}
			if cfg.Extra == nil {
				cfg.Extra = map[string][]string{}
			}
			cfg.Extra[svc] = append(cfg.Extra[svc], strings.Fields(args)...)
		}
		return nil
	})
	fs.BoolVar(&quiet, "quiet", false, "write service logs to <data-dir>/logs instead of the terminal")
	fs.StringVar(&logLvl, "log-level", "info", "launcher log level")
	fs.StringVar(&pprofL, "pprof-listen", "", "serve Go's /debug/pprof profiles of this process (embedded etcd, Kafka and Redis) on this address (empty: off; keep it on loopback)")
	fs.IntVar(&gcMin, "gc-min-heap", 64, "MiB: the Go heap size below which this process (embedded etcd, Kafka and Redis) does not collect; 0: plain GOGC (see docs/TUNING.md)")
	// Set here, the slack is this process's (embedded etcd, Kafka and Redis)
	// and, inherited, every service's it starts.
	fs.Duration(svc.TimerSlackFlag, 500*time.Microsecond, "Linux timer slack of this process and the services it starts (they inherit it): fewer wake-ups of the Go runtime on small machines, timers up to this much late (see docs/TUNING.md); 0 keeps the slack it was started with")
	svc.Parse(fs, os.Args[1:])

	log, err := obs.NewLogger(os.Stderr, "text", logLvl, "gochat-dev")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cfg.UpPartitions < 1 {
		fmt.Fprintf(os.Stderr, "-up-partitions %d: want at least 1\n", cfg.UpPartitions)
		os.Exit(2)
	}
	if !quiet {
		cfg.Logs = os.Stderr
	}
	if pprofL != "" {
		obs.StartPprof(pprofL, log)
	}
	cfg.Ports.Gateway = []int{wsPort}
	abs, err := filepath.Abs(cfg.DataDir)
	if err == nil {
		cfg.DataDir = abs
	}

	// SIGHUP too: closing the terminal stops the stack in order.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// The embedded servers keep a few MB live and turn over a lot of
	// garbage per message; without a floor they collect many times a second.
	go obs.GCFloor{Min: uint64(gcMin) << 20}.Run(ctx)
	log.Info("starting GoChat", "data", cfg.DataDir)
	st, err := stack.Start(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		os.Exit(1)
	}
	ctl := filepath.Join(cfg.BinDir, "gochatctl")
	if rel, err := filepath.Rel(".", ctl); err == nil {
		ctl = "./" + rel
	}
	fmt.Printf(`
GoChat is running (embedded mode; data in %s)

  WebSocket:   %s?token=<token>
  Get a token: %s -data-dir %s token <user>
  Logic RPC:   %s   etcd: %s   Kafka: %s   Redis: %s

Stop with Ctrl-C; start again with the same data directory to keep every message.
`, cfg.DataDir, st.WebSocketURL(0), ctl, cfg.DataDir, st.LogicAddr(), st.EtcdEndpoint(), st.KafkaBrokers(), st.RedisAddr())
	for i := 1; i < cfg.Gateways; i++ {
		fmt.Printf("  WebSocket (gateway %d): %s\n", i+1, st.WebSocketURL(i))
	}
	<-ctx.Done()
	log.Info("stopping")
	st.Stop()
	log.Info("stopped")
}
