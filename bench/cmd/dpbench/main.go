// Command dpbench measures how many messages per second the dataproxy
// persists: it drives AppendMessages through the real Kitex RPC, the way
// logic does, and reports messages persisted per second and the latency of
// the calls (percentiles), with progress while it runs.
//
// Each of -concurrency workers sends calls of -batch messages, one after
// another, spread round-robin over the -convs one-to-one conversations the
// worker owns (conversation i belongs to worker i mod concurrency; with
// fewer conversations than workers, workers share them). Users and
// conversations are named with a fresh random prefix, so runs never collide
// and -verify can check afterwards that nothing was lost or stored twice: it
// retries every call that failed, as a client would (same client message
// ids: what the failed call stored comes back as a duplicate), and then
// checks that each conversation's seqs are exactly 1..n and that the
// store's last_seq is n.
//
//	dpbench -addr 127.0.0.1:8910 -concurrency 64 -convs 2000 -batch 10 -duration 30s
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

type options struct {
	addr        string
	etcd        string
	concurrency int
	convs       int
	batch       int
	body        int
	duration    time.Duration
	count       int64
	timeout     time.Duration
	progress    time.Duration
	prefix      string
	verify      bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("dpbench", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "", "dataproxy address(es), comma-separated (skips discovery)")
	fs.StringVar(&o.etcd, "etcd", "", "etcd endpoints to find gochat.dataproxy through, comma-separated (when -addr is empty)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "calls in flight")
	fs.IntVar(&o.convs, "convs", 1000, "one-to-one conversations written to")
	fs.IntVar(&o.batch, "batch", 1, "messages per AppendMessages call")
	fs.IntVar(&o.body, "body", 100, "message body size in bytes")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to send (ignored with -count)")
	fs.Int64Var(&o.count, "count", 0, "stop after this many messages instead of after -duration")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "RPC timeout")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress report interval (0: none)")
	fs.StringVar(&o.prefix, "prefix", "", "prefix of user ids (default: random, so every run starts from empty conversations)")
	fs.BoolVar(&o.verify, "verify", true, "after the run, check through SyncMessages that every conversation holds exactly the acknowledged seqs 1..n")
	_ = fs.Parse(os.Args[1:])
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "dpbench:", err)
		os.Exit(1)
	}
}

func (o *options) check() error {
	switch {
	case o.addr == "" && o.etcd == "":
		return errors.New("set -addr or -etcd")
	case o.concurrency < 1 || o.convs < 1 || o.batch < 1 || o.body < 0:
		return errors.New("-concurrency, -convs and -batch must be positive, -body not negative")
	case o.count <= 0 && o.duration <= 0:
		return errors.New("set -duration or -count")
	}
	if o.prefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.prefix = "b" + hex.EncodeToString(b[:]) + "_"
	}
	if !ids.ValidUID(o.prefix + "a" + strconv.Itoa(o.convs)) {
		return fmt.Errorf("-prefix %q makes invalid user ids", o.prefix)
	}
	return nil
}

func newClient(o options) (dpsvc.Client, error) {
	cfg := rpcx.ClientConfig{Service: rpcx.DataProxyService, Caller: "dpbench", Timeout: o.timeout}
	if o.addr != "" {
		cfg.HostPorts = config.List(o.addr)
	} else {
		cfg.Etcd = config.List(o.etcd)
	}
	opts, err := rpcx.ClientOptions(cfg)
	if err != nil {
		return nil, err
	}
	// One pooled connection per call in flight.
	opts = append(opts, client.WithLongConnection(connpool.IdleConfig{
		MinIdlePerAddress: min(o.concurrency, 5), MaxIdlePerAddress: o.concurrency, MaxIdleTimeout: time.Minute,
	}))
	return dpsvc.NewClient(rpcx.DataProxyService, opts...)
}

// conv is one conversation of the run and what the run got for it.
type conv struct {
	id, a, b string
	next     int     // next client message number
	seqs     []int64 // acknowledged seqs, in the order acknowledged
}

// failedCall is a call that returned an error, kept for -verify.
type failedCall struct {
	items   []*dataproxy.AppendItem
	targets []*conv
}

// stats are the running totals, read by the progress printer.
type stats struct {
	stored, dups, rejected, calls, failed atomic.Int64
}

func run(o options) error {
	if err := o.check(); err != nil {
		return err
	}
	cli, err := newClient(o)
	if err != nil {
		return err
	}
	convs := make([]*conv, o.convs)
	for i := range convs {
		a, b := o.prefix+"a"+strconv.Itoa(i), o.prefix+"b"+strconv.Itoa(i)
		convs[i] = &conv{id: ids.P2P(a, b), a: a, b: b}
	}
	// Workers own disjoint conversations when there are enough of them;
	// shared conversations are locked per call.
	owned := make([][]*conv, o.concurrency)
	for i, c := range convs {
		w := i % o.concurrency
		owned[w] = append(owned[w], c)
	}
	for w := range owned {
		if len(owned[w]) == 0 {
			owned[w] = []*conv{convs[w%len(convs)]}
		}
	}
	shared := o.convs < o.concurrency
	var convMu sync.Mutex

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.count <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	body := strings.Repeat("x", o.body)
	var st stats
	var sent atomic.Int64 // messages handed out, for -count
	lat := make([][]time.Duration, o.concurrency)
	errCodes := make([]map[errcode.Code]int, o.concurrency)
	failed := make([][]failedCall, o.concurrency)

	fmt.Printf("dpbench: %d workers, %d conversations, %d messages per call, %d-byte bodies, prefix %s\n",
		o.concurrency, o.convs, o.batch, o.body, o.prefix)
	start := time.Now()
	progressDone := make(chan struct{})
	go progress(o.progress, start, &st, progressDone)

	var wg sync.WaitGroup
	for w := range o.concurrency {
		errCodes[w] = map[errcode.Code]int{}
		wg.Go(func() {
			mine := owned[w]
			turn := 0
			for ctx.Err() == nil {
				items := make([]*dataproxy.AppendItem, o.batch)
				targets := make([]*conv, o.batch)
				if o.count > 0 && sent.Add(int64(o.batch)) > o.count {
					return
				}
				if shared {
					convMu.Lock()
				}
				for k := range items {
					c := mine[turn%len(mine)]
					turn++
					c.next++
					items[k] = &dataproxy.AppendItem{ConvId: c.id, Sender: c.a, Recipient: c.b,
						ClientMsgId: "w" + strconv.Itoa(w) + "-" + strconv.Itoa(c.next), ContentType: "text/plain", Body: body}
					targets[k] = c
				}
				if shared {
					convMu.Unlock()
				}
				t0 := time.Now()
				resp, err := cli.AppendMessages(context.Background(), &dataproxy.AppendMessagesReq{Items: items})
				lat[w] = append(lat[w], time.Since(t0))
				st.calls.Add(1)
				if err != nil {
					st.failed.Add(1)
					code, _ := errcode.Of(err)
					errCodes[w][code]++
					failed[w] = append(failed[w], failedCall{items, targets})
					continue
				}
				if shared {
					convMu.Lock()
				}
				for k, r := range resp.Results {
					switch {
					case r.ErrorCode != 0:
						st.rejected.Add(1)
						errCodes[w][errcode.Code(r.ErrorCode)]++
					case r.Duplicate:
						st.dups.Add(1)
					default:
						st.stored.Add(1)
						targets[k].seqs = append(targets[k].seqs, r.Seq)
					}
				}
				if shared {
					convMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)

	report(o, elapsed, &st, lat, errCodes)
	if o.verify {
		var all []failedCall
		for _, f := range failed {
			all = append(all, f...)
		}
		return verify(cli, convs, all, o.timeout)
	}
	return nil
}

// progress prints the rate of the last interval until done closes.
func progress(every time.Duration, start time.Time, st *stats, done <-chan struct{}) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			n := st.stored.Load()
			fmt.Printf("  %6.1fs  %9d stored  %9.0f msg/s  %7d calls  %d failed\n",
				now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds(), st.calls.Load(), st.failed.Load()+st.rejected.Load())
			last, lastAt = n, now
		}
	}
}

func report(o options, elapsed time.Duration, st *stats, lat [][]time.Duration, codes []map[errcode.Code]int) {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	stored := st.stored.Load()
	fmt.Printf("\nmessages persisted: %d in %.2fs = %.0f msg/s (%d calls, %.0f calls/s, %d messages per call)\n",
		stored, elapsed.Seconds(), float64(stored)/elapsed.Seconds(), st.calls.Load(), float64(st.calls.Load())/elapsed.Seconds(), o.batch)
	fmt.Printf("call latency: p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n",
		round(pct(0.50)), round(pct(0.90)), round(pct(0.99)), round(pct(0.999)), round(pct(1)))
	merged := map[errcode.Code]int{}
	for _, m := range codes {
		for c, n := range m {
			merged[c] += n
		}
	}
	if len(merged) > 0 || st.dups.Load() > 0 {
		fmt.Printf("failed calls: %d; rejected messages: %d; duplicates: %d; by code: %v\n", st.failed.Load(), st.rejected.Load(), st.dups.Load(), merged)
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// verify retries the failed calls and then checks every conversation: its
// seqs, acknowledged during the run or by the retries, are exactly 1..n
// with none twice, and the store's last_seq is n.
func verify(cli dpsvc.Client, convs []*conv, failed []failedCall, timeout time.Duration) error {
	storedAnyway, storedNow := 0, 0
	for _, f := range failed {
		var resp *dataproxy.AppendMessagesResp
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			resp, err = cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: f.items})
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return fmt.Errorf("verify: retry of a failed call: %w", err)
		}
		for k, r := range resp.Results {
			switch {
			case r.ErrorCode != 0:
				return fmt.Errorf("verify: retry of a failed call: item %d rejected: %d %s", k, r.ErrorCode, r.ErrorMessage)
			case r.Duplicate:
				storedAnyway++
			default:
				storedNow++
			}
			f.targets[k].seqs = append(f.targets[k].seqs, r.Seq)
		}
	}
	bad := 0
	for _, c := range convs {
		seqs := slices.Clone(c.seqs)
		slices.Sort(seqs)
		for i, s := range seqs {
			if s != int64(i+1) {
				bad++
				fmt.Printf("verify: %s: seqs are not 1..%d (position %d holds %d)\n", c.id, len(seqs), i, s)
				break
			}
		}
		if len(seqs) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		resp, err := cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: c.id, AfterSeq: int64(len(seqs)), Limit: 1})
		cancel()
		if err != nil {
			return fmt.Errorf("verify %s: %w", c.id, err)
		}
		if resp.LastSeq != int64(len(seqs)) {
			bad++
			fmt.Printf("verify: %s: last_seq %d, but %d messages were acknowledged\n", c.id, resp.LastSeq, len(seqs))
		}
	}
	if bad > 0 {
		return fmt.Errorf("verify: %d conversations are wrong", bad)
	}
	fmt.Printf("verify: %d conversations hold exactly seqs 1..n, each message once", len(convs))
	if len(failed) > 0 {
		fmt.Printf("; %d failed calls retried: %d of their messages had been stored (the caller could not know), %d had not", len(failed), storedAnyway, storedNow)
	}
	fmt.Println()
	return nil
}
