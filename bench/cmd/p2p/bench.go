package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochat-im/gochat/bench/internal/latency"
	"github.com/gochat-im/gochat/bench/internal/wsdial"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

// bench holds the connected pairs and the counters of the current run.
type bench struct {
	senders   []*conn
	receivers []*conn
	peers     []string // peers[i] is the receiver of senders[i]
	body      string

	// next is the send index of the next message, counted over the whole
	// process (warm-ups included); only the pacing goroutine uses it.
	next int64
	// A message is measured when its send index is at least firstIdx and
	// it arrives while measuring (warm-up messages and messages arriving
	// after the drain are not counted). run numbers the measurements.
	measuring atomic.Bool
	firstIdx  atomic.Int64
	run       atomic.Int64

	sent      atomic.Int64
	delivered atomic.Int64 // measured messages received, each once
	acked     atomic.Int64 // measured messages acked, each once
	// Found by the receivers in the measured time (see seqCheck).
	dups        atomic.Int64 // a message received again on the same connection
	ackDups     atomic.Int64 // a message acked again
	skipped     atomic.Int64 // seqs skipped and not received by the end
	late        atomic.Int64 // pushes of a seq lower than one received before
	misnumbered atomic.Int64 // seq order differing from the send order
	reused      atomic.Int64 // a seq received again, for a different message
	// Measured sends the gateway answered with an error frame instead of
	// passing them on (rate_limited, say); refusal is one such reason.
	refused atomic.Int64
	refusal atomic.Pointer[string]

	// Latencies. The end point is when the frame reached the client's
	// socket (the kernel's receive timestamp), except read's: when this
	// process read it, which adds its own waits for a CPU on a shared
	// machine. delivery, ack and read start at the scheduled send time;
	// actual at the write (leaving out any wait to be sent). lag is how
	// long after its scheduled time each message was written.
	delivery, actual, ack, read, lag latency.Recorder
	// The two parts of a delivery, split at the time logic stamped the
	// message (its "ts", in whole milliseconds): from the write to the
	// stamp, and from the stamp to the arrival.
	toLogic, fromLogic latency.Recorder

	// With -trace, every measured delivery of the current run.
	tracing  atomic.Bool
	traceMu  sync.Mutex
	traceLog []traceRow

	stopPings chan struct{}
	closed    atomic.Int64 // connections that closed before the end
	closing   atomic.Bool
}

// conn is a sender's or a receiver's connection; once and seq belong to
// its reading goroutine.
type conn struct {
	c    *wsdial.Conn
	once onceSet
	seq  seqCheck
}

func (c *conn) write(b []byte) error { return c.c.WriteJSON(b) }

// result holds one rate's figures.
type result struct {
	rate                        int
	achieved                    float64
	drain                       time.Duration
	sent, delivered, acked      int64
	dups, ackDups               int64
	skipped, late, misnumbered  int64
	reused, refused             int64
	refusal                     string
	delivery, actual, ack, read latency.Summary
	lag, toLogic, fromLogic     latency.Summary
}

func setup(ctx context.Context, o options, urls []string) (*bench, error) {
	opts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.LogicService, HostPorts: []string{o.logic}, Caller: "bench", Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	cli, err := logicsvc.NewClient(rpcx.LogicService, opts...)
	if err != nil {
		return nil, err
	}
	var users []*common.User
	for i := range o.pairs {
		users = append(users, &common.User{Uid: fmt.Sprintf("%s-s%d", o.prefix, i)}, &common.User{Uid: fmt.Sprintf("%s-r%d", o.prefix, i)})
	}
	for i := 0; i < len(users); i += 1000 {
		if _, err := cli.CreateUsers(ctx, &logic.CreateUsersReq{AdminSecret: o.adminSecret, Users: users[i:min(i+1000, len(users))]}); err != nil {
			return nil, fmt.Errorf("create users: %w", err)
		}
	}
	b := &bench{body: strings.Repeat("x", o.bodySize)}
	dial := func(uid string, i int) (*conn, error) {
		tok, err := cli.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: o.adminSecret, Uid: uid, Device: "bench"})
		if err != nil {
			return nil, fmt.Errorf("token for %s: %w", uid, err)
		}
		var protocols []string
		if o.msgpack {
			protocols = []string{protocol.SubprotocolMsgpack}
		}
		c, err := wsdial.HelloWith(ctx, urls[i%len(urls)]+"?token="+tok.Token, 10*time.Second, protocols...)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", uid, err)
		}
		if c.Binary() != o.msgpack {
			c.Close()
			return nil, fmt.Errorf("connect %s: the gateway did not agree to MessagePack", uid)
		}
		return &conn{c: c}, nil
	}
	for i := range o.pairs {
		s, err := dial(users[2*i].Uid, 2*i)
		if err != nil {
			return nil, err
		}
		r, err := dial(users[2*i+1].Uid, 2*i+1)
		if err != nil {
			return nil, err
		}
		b.senders = append(b.senders, s)
		b.receivers = append(b.receivers, r)
		b.peers = append(b.peers, users[2*i+1].Uid)
		go b.readSender(s)
		go b.readReceiver(r)
	}
	b.stopPings = make(chan struct{})
	go b.keepAlive(20*time.Second, b.stopPings)
	return b, nil
}

// keepAlive pings every connection every d: receivers never send, and the
// gateway closes connections silent for three heartbeat intervals.
func (b *bench) keepAlive(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, c := range append(b.senders[:len(b.senders):len(b.senders)], b.receivers...) {
				_ = c.write([]byte(`{"type":"ping"}`))
			}
		}
	}
}

// lostConn counts a connection that closed during the run: its
// messages would not be delivered, and the figures would be wrong.
func (b *bench) lostConn(err error) {
	if !b.closing.Load() && b.closed.Add(1) == 1 {
		fmt.Printf("warning: a connection closed during the run (%v); deliveries to it are missing from the figures\n", err)
	}
}

func (b *bench) close() {
	b.closing.Store(true)
	if b.stopPings != nil {
		close(b.stopPings)
	}
	for _, c := range append(b.senders, b.receivers...) {
		c.c.Close()
	}
}

// measured returns the current run and whether the message with send
// index idx counts in it.
func (b *bench) measured(idx int64) (int64, bool) {
	run := b.run.Load()
	return run, b.measuring.Load() && idx >= b.firstIdx.Load()
}

func (b *bench) readReceiver(c *conn) {
	for {
		data, err := c.c.ReadJSON()
		if err != nil {
			b.lostConn(err)
			return
		}
		var m protocol.Message
		if json.Unmarshal(data, &m) != nil || m.Type != protocol.TypeMsg {
			continue
		}
		now := time.Now()
		id, ok := parseCMID(m.ClientMsgID)
		idx := int64(-1)
		if ok {
			idx = id.idx
		}
		run, measured := b.measured(idx)
		measured = measured && ok
		counted := int64(0) // the run whose figures count what this push reveals
		if measured {
			counted = run
		}
		chk := c.seq.observe(m.Conv, m.Seq, idx, counted)
		if chk.late && chk.lateRun != 0 && chk.lateRun == run {
			b.skipped.Add(-1) // counted as skipped in this run, it came after all
		}
		if !measured {
			continue
		}
		b.skipped.Add(chk.skipped)
		if chk.late {
			b.late.Add(1)
		}
		if chk.misnumbered {
			b.misnumbered.Add(1)
		}
		if !c.once.first(run, idx) {
			b.dups.Add(1)
			continue
		}
		if chk.repeated {
			b.reused.Add(1)
		}
		at := c.c.ArrivalOr(now)
		b.delivery.Add(at.Sub(id.scheduled))
		b.actual.Add(at.Sub(id.sent()))
		b.read.Add(now.Sub(id.scheduled))
		if m.TS > 0 {
			stamped := time.UnixMilli(m.TS)
			b.toLogic.Add(stamped.Sub(id.sent()))
			b.fromLogic.Add(at.Sub(stamped))
		}
		if b.tracing.Load() {
			b.traceMu.Lock()
			b.traceLog = append(b.traceLog, traceRow{idx: idx, scheduled: id.scheduled.UnixNano(), sent: id.sent().UnixNano(), stamped: m.TS, arrived: at.UnixNano()})
			b.traceMu.Unlock()
		}
		b.delivered.Add(1)
	}
}

func (b *bench) readSender(c *conn) {
	for {
		data, err := c.c.ReadJSON()
		if err != nil {
			b.lostConn(err)
			return
		}
		// An ack, or an error frame answering a send (it names the
		// send's cmid).
		var a struct {
			Type        string `json:"type"`
			ClientMsgID string `json:"cmid"`
			Reason      string `json:"reason"`
		}
		if json.Unmarshal(data, &a) != nil || (a.Type != protocol.TypeAck && a.Type != protocol.TypeError) {
			continue
		}
		id, ok := parseCMID(a.ClientMsgID)
		if !ok {
			continue
		}
		run, measured := b.measured(id.idx)
		if !measured {
			continue
		}
		if !c.once.first(run, id.idx) {
			b.ackDups.Add(1)
			continue
		}
		if a.Type == protocol.TypeError {
			b.refused.Add(1)
			b.refusal.CompareAndSwap(nil, &a.Reason)
			continue
		}
		b.ack.Add(c.c.ArrivalOr(time.Now()).Sub(id.scheduled))
		b.acked.Add(1)
	}
}

// refusalReason is the reason of the first refused send of the run, if any.
func (b *bench) refusalReason() string {
	if r := b.refusal.Load(); r != nil {
		return *r
	}
	return ""
}

// measure sends at rate for the warm-up and the measured time, then waits
// up to -drain for the measured messages and their acks to arrive.
func (b *bench) measure(rate int, o options) result {
	fmt.Printf("\nrate %d msg/s: warming up for %v\n", rate, o.warmup)
	b.pace(rate, o.warmup, false)
	for _, r := range []*latency.Recorder{&b.delivery, &b.actual, &b.ack, &b.read, &b.lag, &b.toLogic, &b.fromLogic} {
		r.Reset()
	}
	// A new run first, so that a late push of the previous run, counted
	// against it, cannot touch the counters being zeroed.
	b.run.Add(1)
	for _, n := range []*atomic.Int64{&b.sent, &b.delivered, &b.acked, &b.dups, &b.ackDups, &b.skipped, &b.late, &b.misnumbered, &b.reused, &b.refused} {
		n.Store(0)
	}
	b.refusal.Store(nil)
	b.traceMu.Lock()
	b.traceLog = b.traceLog[:0]
	b.traceMu.Unlock()
	b.firstIdx.Store(b.next)
	b.measuring.Store(true)
	start := time.Now()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		b.progress(start, stop)
	}()
	b.pace(rate, o.duration, true)
	elapsed := time.Since(start)
	close(stop)
	<-stopped
	deadline := time.Now().Add(o.drain)
	for (b.delivered.Load()+b.refused.Load() < b.sent.Load() || b.acked.Load()+b.refused.Load() < b.sent.Load()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.measuring.Store(false)
	return result{rate: rate, achieved: float64(b.sent.Load()) / elapsed.Seconds(), drain: o.drain,
		sent: b.sent.Load(), delivered: b.delivered.Load(), acked: b.acked.Load(),
		dups: b.dups.Load(), ackDups: b.ackDups.Load(), skipped: b.skipped.Load(), late: b.late.Load(),
		misnumbered: b.misnumbered.Load(), reused: b.reused.Load(), refused: b.refused.Load(), refusal: b.refusalReason(),
		delivery: b.delivery.Snapshot(), actual: b.actual.Snapshot(), ack: b.ack.Snapshot(), read: b.read.Snapshot(),
		lag: b.lag.Snapshot(), toLogic: b.toLogic.Snapshot(), fromLogic: b.fromLogic.Snapshot()}
}

// progress prints a line every second until stop: counts so far, and the
// latencies recorded in the last second (a small sort, in this goroutine,
// so the sender keeps its pace).
func (b *bench) progress(start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var fromD, fromL int
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var d, l latency.Summary
			d, fromD = b.delivery.Since(fromD)
			l, fromL = b.lag.Since(fromL)
			fmt.Printf("  %4.0fs sent %d acked %d delivered %d | last second: delivery from the scheduled send n=%d p50 %s p99 %s max %s ms, send lag max %s ms\n",
				now.Sub(start).Seconds(), b.sent.Load(), b.acked.Load(), b.delivered.Load(),
				d.Count(), latency.Ms(d.Quantile(.5)), latency.Ms(d.Quantile(.99)), latency.Ms(d.Max()), latency.Ms(l.Max()))
		}
	}
}

// pace sends rate messages per second for d, spread over the senders,
// following the plan described at slotOf; when measuring it counts the
// messages sent and records how late each went out.
func (b *bench) pace(rate int, d time.Duration, measuring bool) {
	slot := slotOf(rate)
	start := time.Now()
	tick := time.NewTicker(slot)
	defer tick.Stop()
	var n int64 // messages sent in this call
	for range tick.C {
		el := time.Since(start)
		if el >= d {
			return
		}
		boundary := el.Truncate(slot)
		for dueAt(n, rate) < boundary {
			i := int(b.next % int64(len(b.senders)))
			scheduled := start.Add(scheduledAt(n, rate, slot))
			now := time.Now()
			id := msgID{scheduled: scheduled, idx: b.next, lag: now.Sub(scheduled)}
			frame := `{"type":"send","cmid":"` + formatCMID(id) + `","to":"` + b.peers[i] + `","body":"` + b.body + `"}`
			if err := b.senders[i].write([]byte(frame)); err == nil && measuring {
				b.sent.Add(1)
				b.lag.Add(id.lag)
			}
			b.next++
			n++
		}
	}
}

// traceRow is one measured delivery: its send index, when it was scheduled
// and written (unix ns), logic's stamp (unix ms, 0 if none) and its
// arrival at the receiver's socket (unix ns).
type traceRow struct {
	idx                      int64
	scheduled, sent, arrived int64
	stamped                  int64
}

// writeTrace writes the deliveries of the last run to path as CSV, in send
// order, times in milliseconds from the scheduled send of the first
// message delivered, and returns that time (to match the trace with the
// services' logs) and the number of deliveries.
func (b *bench) writeTrace(path string) (time.Time, int, error) {
	b.traceMu.Lock()
	rows := slices.Clone(b.traceLog)
	b.traceMu.Unlock()
	slices.SortFunc(rows, func(x, y traceRow) int { return cmp.Compare(x.idx, y.idx) })
	f, err := os.Create(path)
	if err != nil {
		return time.Time{}, 0, err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "idx,scheduled_ms,sent_ms,stamped_ms,arrived_ms,delivery_ms,to_logic_ms,from_logic_ms")
	var t0 int64
	if len(rows) > 0 {
		t0 = rows[0].scheduled
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	for _, r := range rows {
		stamped, to, from := "", "", ""
		if r.stamped > 0 {
			st := r.stamped * 1e6
			stamped = fmt.Sprintf("%.0f", ms(st-t0))
			to = fmt.Sprintf("%.3f", ms(st-r.sent))
			from = fmt.Sprintf("%.3f", ms(r.arrived-st))
		}
		fmt.Fprintf(w, "%d,%.3f,%.3f,%s,%.3f,%.3f,%s,%s\n", r.idx, ms(r.scheduled-t0), ms(r.sent-t0), stamped, ms(r.arrived-t0), ms(r.arrived-r.scheduled), to, from)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return time.Time{}, 0, err
	}
	return time.Unix(0, t0), len(rows), f.Close()
}
