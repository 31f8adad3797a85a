// Command p2p measures GoChat's one-to-one latency end to end: pairs of
// WebSocket clients, senders paced at a fixed total rate, receivers timing
// each message from the moment it was written to the moment it arrived
// (send -> gateway -> Kafka -> logic -> dataproxy -> Kafka -> gateway ->
// receiver). It also times acks (send -> durable -> ack back at the sender).
//
// A message has arrived when it reached the receiver's socket: on Linux the
// kernel stamps the time (SO_TIMESTAMPNS), so when this tool, sharing the
// CPUs with the servers, waits for a CPU before it reads, its wait is not
// counted, as it would not be for a client on a machine of its own. The
// report gives the latency as this tool read the messages too.
//
// Against a `make run` stack:
//
//	./bin/p2p -data-dir ./data -rate 5000 -duration 30s -plot p2p.svg
//	./bin/p2p -data-dir ./data -sweep 5000,10000,15000,20000 -duration 20s
//
// It prints progress every second and a percentile table at the end, and
// writes an SVG histogram of the delivery latency.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gochat-im/gochat/bench/internal/devstate"
	"github.com/gochat-im/gochat/bench/internal/latency"
	"github.com/gochat-im/gochat/pkg/config"
)

type options struct {
	dataDir, wsList, logic, adminSecret string
	pairs, rate, bodySize               int
	duration, warmup, drain             time.Duration
	sweep, plot, prefix                 string
	msgpack                             bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("p2p", flag.ExitOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "data directory of a `make run` stack (gives -ws, -logic and -admin-secret)")
	fs.StringVar(&o.wsList, "ws", "", "gateway WebSocket URLs, comma-separated; clients are spread over them")
	fs.StringVar(&o.logic, "logic", "", "logic's Kitex host:port (tokens and users)")
	fs.StringVar(&o.adminSecret, "admin-secret", os.Getenv("GOCHAT_ADMIN_SECRET"), "admin secret")
	fs.IntVar(&o.pairs, "pairs", 100, "sender/receiver pairs (2 connections each)")
	fs.IntVar(&o.rate, "rate", 5000, "messages per second, all senders together")
	fs.IntVar(&o.bodySize, "body", 100, "message body size in bytes")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured time per rate")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured time before each measurement")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "longest wait for the last messages after sending stops")
	fs.StringVar(&o.sweep, "sweep", "", "rates to run one after the other, comma-separated (overrides -rate)")
	fs.StringVar(&o.plot, "plot", "p2p-latency.svg", "SVG histogram of the delivery latency of the last run (empty: none)")
	fs.StringVar(&o.prefix, "user-prefix", "bench", "prefix of the generated user ids")
	fs.BoolVar(&o.msgpack, "msgpack", false, "clients speak MessagePack (subprotocol gochat.msgpack) instead of JSON")
	_ = fs.Parse(os.Args[1:])
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "p2p:", err)
		os.Exit(1)
	}
}

func (o *options) fromDataDir() error {
	if o.dataDir == "" {
		return nil
	}
	st, err := devstate.Load(o.dataDir)
	if err != nil {
		return err
	}
	if o.adminSecret == "" {
		o.adminSecret = st.AdminSecret
	}
	if o.logic == "" {
		o.logic = st.LogicAddr()
	}
	if o.wsList == "" {
		o.wsList = strings.Join(st.GatewayURLs(), ",")
	}
	return nil
}

func run(o options) error {
	if err := o.fromDataDir(); err != nil {
		return err
	}
	urls := config.List(o.wsList)
	if len(urls) == 0 || o.logic == "" || o.adminSecret == "" {
		return fmt.Errorf("need -data-dir, or -ws, -logic and -admin-secret")
	}
	rates := []int{o.rate}
	if o.sweep != "" {
		rates = rates[:0]
		for _, r := range config.List(o.sweep) {
			n, err := strconv.Atoi(r)
			if err != nil || n <= 0 {
				return fmt.Errorf("bad rate %q", r)
			}
			rates = append(rates, n)
		}
	}
	ctx := context.Background()
	fmt.Printf("setting up %d pairs over %d gateway(s)...\n", o.pairs, len(urls))
	b, err := setup(ctx, o, urls)
	if err != nil {
		return err
	}
	defer b.close()
	var results []result
	for _, rate := range rates {
		res := b.measure(rate, o)
		results = append(results, res)
		if o.plot != "" {
			f, err := os.Create(o.plot)
			if err != nil {
				return err
			}
			title := fmt.Sprintf("GoChat one-to-one delivery latency at %d msg/s (%d pairs, %d-byte bodies)", rate, o.pairs, o.bodySize)
			if err := res.delivery.SVG(f, title); err != nil {
				return err
			}
			f.Close()
		}
	}
	fmt.Printf("\nDelivery and ack: from the send to the frame's arrival at the client's socket (the kernel's receive timestamp).\n")
	fmt.Printf("\n| target rate msg/s | achieved msg/s | sent | delivered | not delivered within -drain | delivery p50 ms | p99 ms | p99.9 ms | max ms | ack p50 ms | ack p99 ms |\n")
	fmt.Printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		d, a := r.delivery, r.ack
		fmt.Printf("| %d | %.0f | %d | %d | %d | %s | %s | %s | %s | %s | %s |\n", r.rate, r.achieved, r.sent, r.delivered, r.sent-r.delivered,
			latency.Ms(d.Quantile(.5)), latency.Ms(d.Quantile(.99)), latency.Ms(d.Quantile(.999)), latency.Ms(d.Max()),
			latency.Ms(a.Quantile(.5)), latency.Ms(a.Quantile(.99)))
	}
	fmt.Printf("\nDelivery as this tool read the messages (its own waits for a CPU included):\n\n")
	fmt.Printf("| target rate msg/s | read p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Printf("| %d | %s | %s | %s | %s |\n", r.rate, latency.Ms(r.read.Quantile(.5)), latency.Ms(r.read.Quantile(.99)),
			latency.Ms(r.read.Quantile(.999)), latency.Ms(r.read.Max()))
	}
	fmt.Printf("\nWhere the time goes, split at logic's stamp of each message (\"ts\", whole milliseconds, so each part is off by up to 1 ms):\n")
	fmt.Printf("sender -> gateway -> Kafka -> logic; logic -> dataproxy -> Kafka -> gateway -> recipient.\n\n")
	fmt.Printf("| target rate msg/s | to logic p50 ms | p99 ms | from logic p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Printf("| %d | %s | %s | %s | %s |\n", r.rate, latency.Ms(r.toLogic.Quantile(.5)), latency.Ms(r.toLogic.Quantile(.99)),
			latency.Ms(r.fromLogic.Quantile(.5)), latency.Ms(r.fromLogic.Quantile(.99)))
	}
	fmt.Printf("\npushes out of order or repeated, per conversation, over the whole run: %d\n", b.outOfOrder.Load())
	if n := b.closed.Load(); n > 0 {
		fmt.Printf("\n%d connection(s) closed during the run: the figures are incomplete\n", n)
	}
	if o.plot != "" {
		fmt.Printf("\nhistogram of the last run: %s\n", o.plot)
	}
	return nil
}
