//go:build linux

// Command push measures how fast GoChat gateways push one message to every
// connected user.
//
// It opens -n connections the way the conns tool does (tokens signed with
// -token-secret, spread over the gateways, many source addresses, several
// worker processes), learns each connection's (uid, conn id) from its
// hello, and then, for each of -rounds rounds, produces one push record per
// -batch targets straight to each gateway's downstream Kafka topic
// (gochat.down.<id>), exactly what logic sends for a group message. The
// gateways decode each record once, encode the WebSocket frame once and
// write it to every target. The tool counts the frames as they arrive and
// reports frames per second delivered, the time until the first and the
// last frame arrived (from the moment the records were produced), and the
// arrival-time percentiles.
//
//	scripts/gateways.sh start -n 6 -standalone
//	push -gateways /tmp/gochat-gateways/gateways.txt -token-secret-file /tmp/gochat-gateways/token-secret \
//	     -kafka-brokers 127.0.0.1:<port> -n 100000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/bench/internal/wsload"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

type pushOptions struct {
	brokers string
	size    int
	rounds  int
	burst   int
	batch   int
	timeout time.Duration
	pause   time.Duration
}

func main() {
	if wsload.IsWorker() {
		if err := wsload.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "push worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o  wsload.Options
		po pushOptions
	)
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	o.Register(fs)
	fs.StringVar(&po.brokers, "kafka-brokers", "127.0.0.1:9092", "Kafka bootstrap brokers (the gateways' downstream topics live there)")
	fs.IntVar(&po.size, "size", 100, "message body size in bytes")
	fs.IntVar(&po.rounds, "rounds", 3, "rounds to run, one after another (each is measured)")
	fs.IntVar(&po.burst, "burst", 1, "messages per round, produced back to back (1: one message to everyone; more: a busy room, where frames queued for one connection share a flush)")
	fs.IntVar(&po.batch, "batch", 5000, "targets per downstream record")
	fs.DurationVar(&po.timeout, "round-timeout", time.Minute, "give up waiting for a round's frames after this long")
	fs.DurationVar(&po.pause, "pause", 2*time.Second, "pause between rounds")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of push (open -n connections, push one message to all of them, report frames/s and time to last):\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if err := o.Resolve(); err != nil {
		return err
	}
	if po.size <= 0 || po.rounds <= 0 || po.batch <= 0 || po.burst <= 0 {
		return errors.New("-size, -rounds, -burst and -batch must be positive")
	}
	plans, err := o.Plans()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prod, err := kafkax.NewProducer(kafkax.Common{Brokers: po.brokers}, log)
	if err != nil {
		return err
	}
	defer prod.Close()

	fmt.Printf("push: %d connections to %d gateways from %d worker processes\n", o.N, len(o.Gateways), len(plans))
	start := time.Now()
	fleet, err := wsload.StartFleet(plans)
	if err != nil {
		return err
	}
	defer fleet.Stop()
	if err := openAll(ctx, fleet, o, start); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gochat-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	targets, err := fleet.Targets(ctx, dir)
	if err != nil {
		return err
	}
	fmt.Printf("push: %d connections open; %d targets\n", fleet.Totals().Open, len(targets))

	gwPIDs := wsload.GatewayPIDs(o.Gateways)
	var results []result
	for r := 1; r <= po.rounds; r++ {
		var msgs []kafkax.Msg
		for k := 0; k < po.burst; k++ {
			msgs = append(msgs, records(o.Gateways, targets, po, (r-1)*po.burst+k+1)...)
		}
		res, err := round(ctx, fleet, prod, msgs, len(targets)*po.burst, po, gwPIDs, fleet.PIDs())
		if err != nil {
			return err
		}
		res.n = r
		results = append(results, res)
		fmt.Printf("round %d: %d/%d frames in %s, %.0f frames/s\n", r, res.delivered, len(targets)*po.burst,
			wsload.Dur(res.last), res.rate())
		if r < po.rounds {
			if err := sleep(ctx, po.pause); err != nil {
				return err
			}
		}
	}
	report(o, po, len(targets)*po.burst, results, fleet.Totals())
	return nil
}

// openAll waits until every worker has tried all its connections.
func openAll(ctx context.Context, fleet *wsload.Fleet, o wsload.Options, start time.Time) error {
	tick := time.NewTicker(o.Progress)
	defer tick.Stop()
	deadline := time.After(o.SetupTimeout)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			fmt.Println("push: setup timeout; pushing to what is open")
			return nil
		case now := <-tick.C:
			if err := fleet.Exited(); err != nil {
				return err
			}
			t := fleet.Totals()
			fmt.Printf("%7s  open %d/%d  failed %d\n", wsload.Dur(now.Sub(start).Truncate(100*time.Millisecond)),
				t.Open, o.N, t.DialErrors+t.SetupErrors)
			if t.Done {
				return nil
			}
		}
	}
}

// records builds one push message's downstream records: per gateway, one
// record per batch of that gateway's targets.
func records(gws []wsload.Gateway, targets []wsload.Target, po pushOptions, seq int) []kafkax.Msg {
	byGW := make([][]*events.Target, len(gws))
	for _, t := range targets {
		byGW[t.Gateway] = append(byGW[t.Gateway], &events.Target{Uid: t.UID, ConnId: t.ConnID})
	}
	body := strings.Repeat("x", po.size)
	var out []kafkax.Msg
	for gi, ts := range byGW {
		for from := 0; from < len(ts); from += po.batch {
			rec := &events.DownRecord{
				Kind:    events.DownKind_PUSH,
				Targets: ts[from:min(from+po.batch, len(ts))],
				Message: &common.Message{ConvId: "g:bench", Seq: int64(seq), Sender: "bench",
					ClientMsgId: fmt.Sprintf("push-%d", seq), ContentType: "text", Body: body,
					CreatedAtMs: time.Now().UnixMilli()},
			}
			out = append(out, kafkax.Msg{Topic: kafkax.DownTopic(gws[gi].ID), Value: kafkax.Encode(rec)})
		}
	}
	return out
}

type result struct {
	n           int
	delivered   int64
	first, last time.Duration // from produce to first / last arrival
	p50, p99    time.Duration
	gatewayCPU  time.Duration
	clientCPU   time.Duration
	records     int
}

func (r result) rate() float64 {
	if r.last <= 0 {
		return 0
	}
	return float64(r.delivered) / r.last.Seconds()
}

// round pushes one message and waits for its frames.
func round(ctx context.Context, fleet *wsload.Fleet, prod *kafkax.Producer, msgs []kafkax.Msg, want int,
	po pushOptions, gwPIDs, clientPIDs []int) (result, error) {
	// Workers measure arrivals from the mark time, so mark a moment just
	// ahead, wait for it, and produce exactly then.
	var t0 time.Time
	for lead := 50 * time.Millisecond; ; lead *= 2 {
		t0 = time.Now().Add(lead)
		if err := fleet.Mark(ctx, t0.UnixNano()); err != nil {
			return result{}, err
		}
		if time.Now().Before(t0) {
			break
		}
	}
	time.Sleep(time.Until(t0))
	cpu0, ccpu0 := wsload.TotalCPU(gwPIDs), wsload.TotalCPU(clientPIDs)
	for _, m := range msgs {
		if err := prod.Produce(m.Topic, m.Key, m.Value, nil); err != nil {
			return result{}, fmt.Errorf("produce: %w", err)
		}
	}
	deadline := time.Now().Add(po.timeout)
	var t wsload.Total
	for {
		t = fleet.Totals()
		if t.MarkFrames >= int64(want) || time.Now().After(deadline) {
			break
		}
		if err := ctx.Err(); err != nil {
			return result{}, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := result{
		delivered:  t.MarkFrames,
		records:    len(msgs),
		gatewayCPU: wsload.TotalCPU(gwPIDs) - cpu0,
		clientCPU:  wsload.TotalCPU(clientPIDs) - ccpu0,
		p50:        t.Push.Quantile(0.5),
		p99:        t.Push.Quantile(0.99),
	}
	if t.FirstNS > 0 {
		res.first = time.Duration(t.FirstNS - t0.UnixNano())
		res.last = time.Duration(t.LastNS - t0.UnixNano())
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func report(o wsload.Options, po pushOptions, targets int, rs []result, final wsload.Total) {
	fmt.Println()
	fmt.Println("## push summary")
	fmt.Println()
	fmt.Printf("%d frames per round (%d message(s) to each target) on %d gateways, %d-byte body, %d targets per record; times from the produce call\n\n",
		targets, po.burst, len(o.Gateways), po.size, po.batch)
	var t wsload.Table
	t.Row("round", "delivered", "records", "first frame", "p50", "p99", "last frame", "frames/s", "gateway CPU/frame", "client CPU/frame", "target")
	perFrame := func(d time.Duration, n int64) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/float64(n)/1000)
	}
	for _, r := range rs {
		t.Row(r.n, fmt.Sprintf("%d/%d", r.delivered, targets), r.records, wsload.Dur(r.first), wsload.Dur(r.p50),
			wsload.Dur(r.p99), wsload.Dur(r.last), fmt.Sprintf("%.0f", r.rate()), perFrame(r.gatewayCPU, r.delivered),
			perFrame(r.clientCPU, r.delivered), ">= 150000 frames/s (DESIGN.md section 7)")
	}
	rates := make([]float64, len(rs))
	for i, r := range rs {
		rates[i] = r.rate()
	}
	slices.Sort(rates)
	t.Row("median", "", "", "", "", "", "", fmt.Sprintf("%.0f", rates[len(rates)/2]), "", "", "")
	t.Print(os.Stdout)
	if final.Closed > 0 || len(final.Errors) > 0 {
		fmt.Printf("\nconnections closed by the gateways: %d; errors: %s\n", final.Closed, wsload.TopErrors(final.Errors, 5))
	}
}
