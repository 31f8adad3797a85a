// Command p2p measures GoChat's one-to-one latency end to end: pairs of
// WebSocket clients, senders paced at a fixed total rate, receivers timing
// each message (send -> gateway -> Kafka -> logic -> dataproxy -> Kafka ->
// gateway -> receiver). It also times acks (send -> durable -> ack back at
// the sender).
//
// Times start at the message's scheduled send time, from the pacing plan
// (see slotOf), not at the moment this tool wrote it: when the sender is
// held up, the messages due meanwhile go out late, and timing them from the
// write would leave the wait out (coordinated omission). The report gives
// the latency from the write too, and how far the sends fell behind the
// schedule.
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
// It prints progress every second and percentile tables at the end, checks
// the pushes for duplicates, skipped seqs and reordering, and writes an SVG
// histogram of the delivery latency.
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
	"github.com/gochat-im/gochat/pkg/config"
)

type options struct {
	dataDir, wsList, logic, adminSecret string
	pairs, rate, bodySize               int
	duration, warmup, drain             time.Duration
	sweep, plot, prefix, trace          string
	msgpack                             bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("p2p", flag.ExitOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "data directory of the stack (`dir` of make run or gochat-dev -data-dir; gives -ws, -logic and -admin-secret)")
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
	fs.StringVar(&o.trace, "trace", "", "CSV file of every measured delivery of the last run (scheduled, written, stamped by logic, arrived), to find when and where slow deliveries lost their time (empty: none)")
	fs.StringVar(&o.prefix, "user-prefix", "bench", "prefix of the generated user ids")
	fs.BoolVar(&o.msgpack, "msgpack", false, "clients speak MessagePack (subprotocol gochat.msgpack) instead of JSON")
	_ = fs.Parse(os.Args[1:])
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "p2p:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "p2p:", err)
		os.Exit(1)
	}
}

// maxRate bounds -rate, which keeps the pacing arithmetic in range.
const maxRate = 1_000_000_000

// validate checks the flags' values.
func (o options) validate() error {
	switch {
	case o.pairs < 1:
		return fmt.Errorf("-pairs must be at least 1, not %d", o.pairs)
	case o.sweep == "" && (o.rate < 1 || o.rate > maxRate):
		return fmt.Errorf("-rate must be 1 to %d messages per second, not %d", maxRate, o.rate)
	case o.bodySize < 1:
		return fmt.Errorf("-body must be at least 1 byte, not %d", o.bodySize)
	case o.duration <= 0:
		return fmt.Errorf("-duration must be positive, not %v", o.duration)
	case o.warmup < 0:
		return fmt.Errorf("-warmup must not be negative, not %v", o.warmup)
	case o.drain < 0:
		return fmt.Errorf("-drain must not be negative, not %v", o.drain)
	}
	_, err := o.rates()
	return err
}

// rates returns the rates to measure: -sweep's, or -rate.
func (o options) rates() ([]int, error) {
	if o.sweep == "" {
		return []int{o.rate}, nil
	}
	var rates []int
	for _, r := range config.List(o.sweep) {
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 || n > maxRate {
			return nil, fmt.Errorf("-sweep: bad rate %q (1 to %d messages per second)", r, maxRate)
		}
		rates = append(rates, n)
	}
	if len(rates) == 0 {
		return nil, fmt.Errorf("-sweep: no rates in %q", o.sweep)
	}
	return rates, nil
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
	rates, err := o.rates()
	if err != nil {
		return err
	}
	if o.trace != "" {
		// Fail now rather than after the runs.
		f, err := os.Create(o.trace)
		if err != nil {
			return err
		}
		f.Close()
	}
	ctx := context.Background()
	fmt.Printf("setting up %d pairs over %d gateway(s)...\n", o.pairs, len(urls))
	b, err := setup(ctx, o, urls)
	if err != nil {
		return err
	}
	defer b.close()
	var results []result
	for i, rate := range rates {
		b.tracing.Store(o.trace != "" && i == len(rates)-1) // only the last rate is written
		res := b.measure(rate, o)
		results = append(results, res)
		if o.plot != "" {
			f, err := os.Create(o.plot)
			if err != nil {
				return err
			}
			title := fmt.Sprintf("GoChat one-to-one delivery latency from the scheduled send at %d msg/s (%d pairs, %d-byte bodies)", rate, o.pairs, o.bodySize)
			if err := res.delivery.SVG(f, title); err != nil {
				return err
			}
			f.Close()
		}
	}
	report(os.Stdout, results)
	if n := b.closed.Load(); n > 0 {
		fmt.Printf("\n%d connection(s) closed during the run: the figures are incomplete\n", n)
	}
	if o.plot != "" {
		fmt.Printf("\nhistogram of the last run: %s\n", o.plot)
	}
	if o.trace != "" {
		start, n, err := b.writeTrace(o.trace)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Printf("deliveries of the last run: %s (none)\n", o.trace)
		} else {
			fmt.Printf("deliveries of the last run: %s (%d; times from %s)\n", o.trace, n, start.UTC().Format(time.RFC3339Nano))
		}
	}
	return nil
}
