package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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

	measuring atomic.Bool
	start     atomic.Int64 // UnixNano when the measurement began
	sent      atomic.Int64
	delivered atomic.Int64
	acked     atomic.Int64
	// delivery and ack end when the frame reached the client's socket
	// (the kernel's receive timestamp); read ends when this process read
	// it, which adds its own waits for a CPU on a shared machine.
	delivery latency.Recorder
	ack      latency.Recorder
	read     latency.Recorder
	// The two parts of a delivery, split at the time logic stamped the
	// message (its "ts", in whole milliseconds).
	toLogic, fromLogic latency.Recorder

	stopPings chan struct{}
	closed    atomic.Int64 // connections that closed before the end
	// outOfOrder counts pushes whose seq was not above the last one the
	// receiver had for that conversation (a reordering or a duplicate).
	outOfOrder atomic.Int64
	closing    atomic.Bool
}

type conn struct{ c *wsdial.Conn }

func (c *conn) write(b []byte) error { return c.c.WriteJSON(b) }

type result struct {
	rate               int
	achieved           float64
	sent, delivered    int64
	delivery, ack      latency.Summary
	read               latency.Summary
	toLogic, fromLogic latency.Summary
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
	b := &bench{body: strings.Repeat("x", max(o.bodySize, 1))}
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

// Message bodies and client message ids carry the send time, so neither
// side keeps a table of messages in flight.
func stamp(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// sentAt returns when the stamped message was sent, and whether it was sent
// during the measurement (warm-up messages arriving late are not counted).
func (b *bench) sentAt(s string) (time.Time, bool) {
	s, _, _ = strings.Cut(s, "-")
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil || !b.measuring.Load() || ns < b.start.Load() {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func (b *bench) readReceiver(c *conn) {
	last := map[string]int64{} // conversation -> highest seq received
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
		if m.Seq <= last[m.Conv] {
			b.outOfOrder.Add(1)
		} else {
			last[m.Conv] = m.Seq
		}
		if sent, ok := b.sentAt(m.ClientMsgID); ok {
			now := time.Now()
			at := c.c.ArrivalOr(now)
			b.delivery.Add(at.Sub(sent))
			b.read.Add(now.Sub(sent))
			b.delivered.Add(1)
			if m.TS > 0 {
				stamped := time.UnixMilli(m.TS)
				b.toLogic.Add(stamped.Sub(sent))
				b.fromLogic.Add(at.Sub(stamped))
			}
		}
	}
}

func (b *bench) readSender(c *conn) {
	for {
		data, err := c.c.ReadJSON()
		if err != nil {
			b.lostConn(err)
			return
		}
		var a protocol.Ack
		if json.Unmarshal(data, &a) != nil || a.Type != protocol.TypeAck {
			continue
		}
		if sent, ok := b.sentAt(a.ClientMsgID); ok {
			b.ack.Add(c.c.ArrivalOr(time.Now()).Sub(sent))
			b.acked.Add(1)
		}
	}
}

// measure sends at rate for the warm-up and the measured time, then waits
// for the measured messages to arrive.
func (b *bench) measure(rate int, o options) result {
	fmt.Printf("\nrate %d msg/s: warming up for %v\n", rate, o.warmup)
	b.pace(rate, o.warmup, false)
	b.delivery.Reset()
	b.ack.Reset()
	b.read.Reset()
	b.toLogic.Reset()
	b.fromLogic.Reset()
	b.sent.Store(0)
	b.delivered.Store(0)
	b.acked.Store(0)
	start := time.Now()
	b.start.Store(start.UnixNano())
	b.measuring.Store(true)
	b.pace(rate, o.duration, true)
	elapsed := time.Since(start)
	deadline := time.Now().Add(o.drain)
	for b.delivered.Load() < b.sent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.measuring.Store(false)
	return result{rate: rate, achieved: float64(b.sent.Load()) / elapsed.Seconds(), sent: b.sent.Load(),
		delivered: b.delivered.Load(), delivery: b.delivery.Snapshot(), ack: b.ack.Snapshot(), read: b.read.Snapshot(),
		toLogic: b.toLogic.Snapshot(), fromLogic: b.fromLogic.Snapshot()}
}

// pace sends rate messages per second for d, spread over the senders, in
// slots of 1 ms, or of one message when they are further apart (waking
// every millisecond for nothing costs the box a few percent of a CPU); it
// prints progress every second when measuring.
func (b *bench) pace(rate int, d time.Duration, progress bool) {
	start := time.Now()
	tick := time.NewTicker(max(time.Millisecond, time.Second/time.Duration(rate)))
	defer tick.Stop()
	var due, n float64
	next := 0
	lastReport := start
	for now := range tick.C {
		el := now.Sub(start)
		if el >= d {
			return
		}
		due = el.Seconds() * float64(rate)
		for n < due {
			s := b.senders[next%len(b.senders)]
			to := `"to":"` + b.peers[next%len(b.senders)] + `"`
			t := time.Now()
			frame := `{"type":"send","cmid":"` + stamp(t) + "-" + strconv.Itoa(next) + `",` + to + `,"body":"` + b.body + `"}`
			if err := s.write([]byte(frame)); err == nil && progress {
				b.sent.Add(1)
			}
			next++
			n++
		}
		if progress && now.Sub(lastReport) >= time.Second {
			lastReport = now
			fmt.Printf("  %4.0fs sent %d acked %d delivered %d | delivery %s\n", el.Seconds(), b.sent.Load(), b.acked.Load(), b.delivered.Load(), b.delivery.Snapshot().Line())
		}
	}
}
