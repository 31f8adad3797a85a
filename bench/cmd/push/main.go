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
	"encoding/json"
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

	"github.com/gochat-im/gochat/bench/internal/refserver"
	"github.com/gochat-im/gochat/bench/internal/wsload"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

type pushOptions struct {
	brokers string
	// reference: run this many minimal netpoll servers (refserver)
	// instead of pushing through gateways.
	// roundKeepalives: clients keep sending heartbeats during rounds.
	roundKeepalives bool
	reference       int
	refWriters      int
	refWrite        string
	refProcs        int
	size            int
	rounds          int
	burst           int
	batch           int
	timeout         time.Duration
	pause           time.Duration
}

func main() {
	if refserver.IsServer() {
		if err := refserver.Serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "push reference server:", err)
			os.Exit(1)
		}
		return
	}
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
	fs.BoolVar(&po.roundKeepalives, "round-keepalives", false, "let clients send their heartbeats during measured rounds too (default: they pause for the round, at most 30 s, so the figure is the push alone)")
	fs.IntVar(&po.reference, "reference", 0, "instead of gateways, start this many minimal netpoll push servers (the yardstick for the gateway's figure; no Kafka, no token check) and push through them")
	fs.IntVar(&po.refWriters, "ref-writers", 0, "with -reference: goroutines per server writing a push (0: GOMAXPROCS)")
	fs.StringVar(&po.refWrite, "ref-write", refserver.WriteNetpoll, "with -reference: how a server writes each frame: netpoll (Malloc+Flush, one sendmsg) or raw (one write(2))")
	fs.IntVar(&po.refProcs, "ref-procs", 0, "with -reference: GOMAXPROCS of each server (0: inherited)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of push (open -n connections, push one message to all of them, report frames/s and time to last):\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	var refs []*refserver.Proc
	if po.reference > 0 {
		if po.refWrite != refserver.WriteNetpoll && po.refWrite != refserver.WriteRaw {
			return fmt.Errorf("-ref-write %q: want netpoll or raw", po.refWrite)
		}
		var err error
		refs, err = refserver.Start(po.reference, refserver.Config{Listen: "127.0.0.1:0", Writers: po.refWriters,
			Write: po.refWrite, MaxProcs: po.refProcs})
		if err != nil {
			return err
		}
		defer refserver.Stop(refs)
		var specs []string
		for i, r := range refs {
			specs = append(specs, fmt.Sprintf("ref%d=%s/%d", i+1, r.Addr, r.PID))
		}
		o.GatewaysFile, o.GatewaySpecs = "", strings.Join(specs, ",")
		if o.Secret == "" && o.SecretFile == "" {
			o.Secret = "reference" // signed tokens are sent but not checked
		}
	}
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

	var prod *kafkax.Producer
	if refs == nil {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if prod, err = kafkax.NewProducer(kafkax.Common{Brokers: po.brokers}, log); err != nil {
			return err
		}
		defer prod.Close()
		fmt.Printf("push: %d connections to %d gateways from %d worker processes\n", o.N, len(o.Gateways), len(plans))
	} else {
		fmt.Printf("push: %d connections to %d reference servers (%s writes, %d writer(s) each) from %d worker processes\n",
			o.N, len(refs), po.refWrite, po.refWriters, len(plans))
	}
	start := time.Now()
	fleet, err := wsload.StartFleet(plans)
	if err != nil {
		return err
	}
	defer fleet.Stop()
	if err := openAll(ctx, fleet, o, start); err != nil {
		return err
	}
	var targets []wsload.Target
	if refs == nil {
		dir, err := os.MkdirTemp("", "gochat-push-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if targets, err = fleet.Targets(ctx, dir); err != nil {
			return err
		}
		fmt.Printf("push: %d connections open; %d targets\n", fleet.Totals().Open, len(targets))
	} else {
		open := int(fleet.Totals().Open)
		targets = make([]wsload.Target, open) // a reference server pushes to all it holds
		fmt.Printf("push: %d connections open\n", open)
	}

	gwPIDs := wsload.GatewayPIDs(o.Gateways)
	var results []result
	for r := 1; r <= po.rounds; r++ {
		var (
			trigger func() error
			nrec    int
		)
		if refs == nil {
			var msgs []kafkax.Msg
			for k := 0; k < po.burst; k++ {
				msgs = append(msgs, records(o.Gateways, targets, po, (r-1)*po.burst+k+1)...)
			}
			nrec = len(msgs)
			trigger = func() error {
				for _, m := range msgs {
					if err := prod.Produce(m.Topic, m.Key, m.Value, nil); err != nil {
						return fmt.Errorf("produce: %w", err)
					}
				}
				return nil
			}
		} else {
			trigger, nrec = refTrigger(refs, po, r), len(refs)*po.burst
		}
		res, err := round(ctx, fleet, trigger, len(targets)*po.burst, po, gwPIDs, fleet.PIDs())
		if err != nil {
			return err
		}
		res.records = nrec
		if refs != nil {
			if err := refDone(refs, po, &res); err != nil {
				return err
			}
		}
		res.n = r
		results = append(results, res)
		fmt.Printf("round %d: %d/%d frames in %s, %.0f frames/s", r, res.delivered, len(targets)*po.burst,
			wsload.Dur(res.last), res.rate())
		if refs != nil {
			fmt.Printf(" (servers done writing after %s)", wsload.Dur(res.serverWrite))
		}
		fmt.Printf("; other load %.0f%%\n", 100*res.otherCPU)
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

// pushFrame is the WebSocket frame a gateway writes for the push records
// of this tool: the same JSON, so a reference server writes the same bytes.
func pushFrame(po pushOptions, seq int) []byte {
	b, _ := json.Marshal(protocol.Message{Type: protocol.TypeMsg, Conv: "g:bench", Seq: int64(seq), From: "bench",
		ClientMsgID: fmt.Sprintf("push-%d", seq), ContentType: "text", Body: strings.Repeat("x", po.size),
		TS: time.Now().UnixMilli()})
	return refserver.TextFrame(b)
}

// refTrigger returns what starts round r on the reference servers: each is
// sent the frame of each message of the burst.
func refTrigger(refs []*refserver.Proc, po pushOptions, r int) func() error {
	var frames [][]byte
	for k := 0; k < po.burst; k++ {
		frames = append(frames, pushFrame(po, (r-1)*po.burst+k+1))
	}
	return func() error {
		for _, f := range frames {
			for _, p := range refs {
				if err := p.Push(f); err != nil {
					return fmt.Errorf("reference push: %w", err)
				}
			}
		}
		return nil
	}
}

// refDone collects the reference servers' answers for a round and notes
// the longest time a server spent writing.
func refDone(refs []*refserver.Proc, po pushOptions, res *result) error {
	for k := 0; k < po.burst; k++ {
		for _, p := range refs {
			_, took, err := p.Done(po.timeout)
			if err != nil {
				return err
			}
			res.serverWrite = max(res.serverWrite, took)
		}
	}
	return nil
}

type result struct {
	serverWrite time.Duration // reference servers: longest time writing a push
	n           int
	delivered   int64
	first, last time.Duration // from produce to first / last arrival
	p50, p99    time.Duration
	gatewayCPU  time.Duration
	clientCPU   time.Duration
	otherCPU    float64 // share of the machine's CPU other work used during the round
	records     int
}

func (r result) rate() float64 {
	if r.last <= 0 {
		return 0
	}
	return float64(r.delivered) / r.last.Seconds()
}

// round pushes one message (trigger sends it) and waits for its frames.
func round(ctx context.Context, fleet *wsload.Fleet, trigger func() error, want int,
	po pushOptions, gwPIDs, clientPIDs []int) (result, error) {
	// Workers measure arrivals from the mark time, so mark a moment just
	// ahead, wait for it, and produce exactly then.
	var quiet time.Duration
	if !po.roundKeepalives {
		quiet = min(po.timeout, 30*time.Second)
		defer func() { _ = fleet.Resume() }()
	}
	var t0 time.Time
	for lead := 50 * time.Millisecond; ; lead *= 2 {
		t0 = time.Now().Add(lead)
		if err := fleet.Mark(ctx, t0.UnixNano(), quiet); err != nil {
			return result{}, err
		}
		if time.Now().Before(t0) {
			break
		}
	}
	time.Sleep(time.Until(t0))
	cpu0, ccpu0 := wsload.TotalCPU(gwPIDs), wsload.TotalCPU(clientPIDs)
	own0, _ := wsload.CPUTime(os.Getpid())
	busy0, box0, _ := wsload.BoxCPU()
	if err := trigger(); err != nil {
		return result{}, err
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
	own1, _ := wsload.CPUTime(os.Getpid())
	busy1, box1, _ := wsload.BoxCPU()
	res := result{
		delivered:  t.MarkFrames,
		gatewayCPU: wsload.TotalCPU(gwPIDs) - cpu0,
		clientCPU:  wsload.TotalCPU(clientPIDs) - ccpu0,
		p50:        t.Push.Quantile(0.5),
		p99:        t.Push.Quantile(0.99),
	}
	if box1 > box0 {
		// What other work used: busy time not spent by the processes
		// under test or this tool, as a share of all CPU time.
		other := (busy1 - busy0) - (res.gatewayCPU + res.clientCPU) - (own1 - own0)
		res.otherCPU = max(0, float64(other)/float64(box1-box0))
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
	t.Row("round", "delivered", "records", "first frame", "p50", "p99", "last frame", "frames/s", "gateway CPU/frame", "client CPU/frame", "other load", "target")
	perFrame := func(d time.Duration, n int64) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/float64(n)/1000)
	}
	for _, r := range rs {
		t.Row(r.n, fmt.Sprintf("%d/%d", r.delivered, targets), r.records, wsload.Dur(r.first), wsload.Dur(r.p50),
			wsload.Dur(r.p99), wsload.Dur(r.last), fmt.Sprintf("%.0f", r.rate()), perFrame(r.gatewayCPU, r.delivered),
			perFrame(r.clientCPU, r.delivered), fmt.Sprintf("%.0f%%", 100*r.otherCPU), ">= 150000 frames/s (DESIGN.md section 7)")
	}
	rates := make([]float64, len(rs))
	for i, r := range rs {
		rates[i] = r.rate()
	}
	t.Row("median", "", "", "", "", "", "", fmt.Sprintf("%.0f", median(rates)), "", "", "", "")
	t.Print(os.Stdout)
	fmt.Println("\np50, p99: read from a histogram, as the lower bound of the bucket holding the value (up to 3% below it, never above)")
	fmt.Println("other load: the share of the machine's CPU time that processes other than the servers, the client workers and this tool used during the round")
	if final.Closed > 0 || len(final.Errors) > 0 {
		fmt.Printf("\nconnections closed by the gateways: %d; errors: %s\n", final.Closed, wsload.TopErrors(final.Errors, 5))
	}
}

// median returns the median of xs: the middle value, or the mean of the
// two middle values of an even count (0 for none). xs is sorted in place.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	slices.Sort(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
