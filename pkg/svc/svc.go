// Package svc holds the settings every GoChat service shares (logging,
// admin endpoint, etcd, Kafka) and the start-up steps that go with them,
// so each cmd/<svc>/main.go only wires its own parts.
package svc

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/obs"
	"github.com/gochat-im/gochat/pkg/timerslack"
)

// Common are the shared settings.
type Common struct {
	LogFormat   string
	LogLevel    string
	AdminListen string
	Etcd        string
	Kafka       string
	KafkaConfig string
	// GCMinHeapMiB is the GC heap floor (obs.GCFloor), in MiB; 0: none.
	GCMinHeapMiB int
}

// RegisterGC defines -gc-min-heap on fs with the given default in MiB.
func (c *Common) RegisterGC(fs *flag.FlagSet, defMiB int) {
	fs.IntVar(&c.GCMinHeapMiB, "gc-min-heap", defMiB, "smallest Go heap target in MiB: while the live heap is small, the GC waits until the heap reaches this size instead of collecting after every few hundred KiB (fewer collections and lower latency under load, at most this much extra memory); 0: plain GOGC")
}

// StartGCFloor runs the GC heap floor of -gc-min-heap until ctx ends; call
// it after setting the GC percentage.
func (c *Common) StartGCFloor(ctx context.Context) {
	if c.GCMinHeapMiB > 0 {
		go obs.GCFloor{Min: uint64(c.GCMinHeapMiB) << 20}.Run(ctx)
	}
}

// Register defines the shared flags on fs with the given admin default.
func (c *Common) Register(fs *flag.FlagSet, adminDefault string) {
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.AdminListen, "admin-listen", adminDefault, "address of the admin HTTP server (/metrics, /healthz, /readyz); empty disables it")
	fs.StringVar(&c.Etcd, "etcd", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	fs.Bool(ProbeFlag, false, "ask this service's /readyz on -admin-listen (same settings as the service), print the answer and exit 0 if ready, 1 if not; starts nothing (for container health checks)")
}

// RegisterKafka defines -kafka-brokers and -kafka-config, for the services
// that use Kafka (all but dataproxy, which would only accept and ignore
// them).
func (c *Common) RegisterKafka(fs *flag.FlagSet) {
	fs.StringVar(&c.Kafka, "kafka-brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&c.KafkaConfig, "kafka-config", "", "extra librdkafka properties for every client, key=value,key=value")
}

// EtcdEndpoints returns the etcd endpoint list.
func (c *Common) EtcdEndpoints() []string { return config.List(c.Etcd) }

// KafkaCommon returns the Kafka client settings.
func (c *Common) KafkaCommon() (kafkax.Common, error) {
	extra, err := kafkax.ParseConfig(c.KafkaConfig)
	if err != nil {
		return kafkax.Common{}, err
	}
	return kafkax.Common{Brokers: c.Kafka, Extra: extra}, nil
}

// Logger builds the service logger, makes it the default and makes it
// Kitex's logger too (obs.Klog, lines with lib=kitex), so that with
// -log-format json Kitex's lines are JSON like the rest. Kitex lines below
// warnings are dropped, as package rpcx has Kitex's own logger do (Kitex
// logs every connection event at info level). Etcd clients take their
// logger from slog.Default() when they are made (obs.EtcdLogger), so call
// this first. Call it once, before any Kitex client or server exists:
// klog.SetLogger is not safe to call while Kitex logs.
func (c *Common) Logger(service string) (*slog.Logger, error) {
	log, err := obs.NewLogger(os.Stderr, c.LogFormat, c.LogLevel, service)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	k := obs.NewKlog(log)
	k.SetLevel(klog.LevelWarn)
	klog.SetLogger(k)
	return log, nil
}

// TimerSlackFlag is the flag (GOCHAT_TIMER_SLACK in the environment) every
// service gets from Parse: the Linux timer slack of the whole process (see
// package timerslack and docs/TUNING.md).
const TimerSlackFlag = "timer-slack"

// Parse loads fs from file, environment and args; on error it prints the
// reason and exits with status 2, as flag.ExitOnError does. With -probe
// (see Register) it runs Probe and exits with its status. It adds
// -timer-slack to fs unless fs defines it (with its own default), and then
// applies it, which may restart the program in place (timerslack.Apply).
func Parse(fs *flag.FlagSet, args []string) {
	if fs.Lookup(TimerSlackFlag) == nil {
		fs.Duration(TimerSlackFlag, 0, "Linux timer slack of every thread, e.g. 500us: on small virtual machines a few hundred microseconds cut the Go runtime's wake-ups and the CPU they cost (see docs/TUNING.md); 0 keeps the slack the process was started with")
	}
	if err := config.Parse(fs, args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if p := fs.Lookup(ProbeFlag); p != nil && p.Value.String() == "true" {
		admin := ""
		if a := fs.Lookup("admin-listen"); a != nil {
			admin = a.Value.String()
		}
		os.Exit(Probe(context.Background(), admin, os.Stdout))
	}
	if g, ok := fs.Lookup(TimerSlackFlag).Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			if err := timerslack.Apply(d); err != nil {
				fmt.Fprintln(os.Stderr, "warning: -timer-slack not applied:", err)
			}
		}
	}
}
