package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

func pushTo(targets []*events.Target, body string) *events.DownRecord {
	return &events.DownRecord{Kind: events.DownKind_PUSH, Targets: targets,
		Message: &common.Message{ConvId: "g:room", Seq: 1, Sender: "bob", ContentType: "text", Body: body}}
}

// fillSocket pushes big frames to a client that does not read until the
// gateway's writer for it is blocked in Flush (the socket buffers are full).
func fillSocket(t *testing.T, e *env, target *events.Target) {
	t.Helper()
	big := pushTo([]*events.Target{target}, strings.Repeat("z", 1<<20))
	for i := 0; i < 64; i++ {
		if n, _ := e.srv.Fanout().Deliver(big); n == 0 {
			t.Fatal("slow client gone while filling its socket")
		}
	}
}

// A client whose queue overflows is told why (1008) and counted; one that
// does not read at all is dropped when the write timeout runs out.
func TestSlowClientClosedWith1008(t *testing.T) {
	// The byte bound is raised out of the way: this is the frame bound.
	e := start(t, func(c *Config) {
		c.WriteQueue = 70
		c.WriteQueueBytes = maxWriteQueueBytes
		c.WriteTimeout = 3 * time.Second
	})
	c, h := connect(t, e, "alice")
	target := &events.Target{Uid: "alice", ConnId: h.ConnID}
	fillSocket(t, e, target)
	// Now the writer is stuck: small pushes pile up until the queue
	// overflows.
	small := pushTo([]*events.Target{target}, "hi")
	for i := 0; i < 100 && e.srv.Conns() > 0; i++ {
		_, _ = e.srv.Fanout().Deliver(small)
	}
	eventually(t, "slow client counted", func() bool { return testutil.ToFloat64(e.m.SlowClients) >= 1 })
	// The client finally reads: it gets what was already written, then the
	// close frame with 1008 in place of the frames that never left.
	c.expectClose(ws.StatusPolicyViolation)
	eventually(t, "connection gone", func() bool { return e.srv.Conns() == 0 })
}

// A few clients that never read block their writers in Flush; pushes to
// everybody else must still arrive at once, long before the write timeout
// frees those writers.
func TestSlowClientsDoNotStallOthers(t *testing.T) {
	// fillSocket queues 64 MiB: the byte bound is raised out of its way
	// (a client closed as slow would block its writer all the same).
	e := start(t, func(c *Config) { c.WriteQueueBytes = maxWriteQueueBytes; c.WriteTimeout = 20 * time.Second })
	// More stuck clients than the writer pool's core goroutines.
	stuck := 4*runtime.GOMAXPROCS(0) + 2
	for i := 0; i < stuck; i++ {
		uid := "slow" + strconv.Itoa(i)
		_, h := connect(t, e, uid)
		fillSocket(t, e, &events.Target{Uid: uid, ConnId: h.ConnID})
	}
	fast, hf := connect(t, e, "fast")
	start := time.Now()
	for i := 0; i < 5; i++ {
		if n, _ := e.srv.Fanout().Deliver(pushTo([]*events.Target{{Uid: "fast", ConnId: hf.ConnID}}, "ping "+strconv.Itoa(i))); n != 1 {
			t.Fatalf("push %d not queued", i)
		}
		var m struct{ Body string }
		fast.readJSON(&m)
		if m.Body != "ping "+strconv.Itoa(i) {
			t.Fatalf("got %q", m.Body)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("pushes to a reading client took %v while others were stuck", d)
	}
}

// BenchmarkFanout measures the whole push path of one record to 1,000
// real connections: lookup in the connection table, the frame encoded once
// and queued to every target, one flush per connection. An op is one frame
// delivered to a client; allocs/frame counts every allocation in the
// process while frames flow (including the once-per-record encoding).
func BenchmarkFanout(b *testing.B) {
	const conns = 1000
	e := start(b, nil)
	var targets []*events.Target
	var got atomic.Int64
	for i := 0; i < conns; i++ {
		uid := "u" + strconv.Itoa(i)
		c, id := dialB(b, e, uid)
		targets = append(targets, &events.Target{Uid: uid, ConnId: id})
		go drainCount(c, &got)
	}
	rec := pushTo(targets, strings.Repeat("m", 100))
	round := func() {
		base := got.Load()
		if n, err := e.srv.Fanout().Deliver(rec); err != nil || n != conns {
			b.Fatal(n, err)
		}
		for got.Load() < base+conns {
			runtime.Gosched()
		}
	}
	for i := 0; i < 5; i++ {
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0 := ms.Mallocs
	rounds := (b.N + conns - 1) / conns
	for r := 0; r < rounds; r++ {
		round()
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	frames := float64(rounds * conns)
	b.ReportMetric(float64(ms.Mallocs-m0)/frames, "allocs/frame")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
}

// dialB opens a WebSocket connection for a benchmark and returns the
// connection (positioned after hello) and its conn id.
func dialB(b *testing.B, e *env, uid string) (net.Conn, int64) {
	tok := token(b, uid, "phone", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{}.Dial(ctx, "ws://"+e.addr+"/ws?token="+tok)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	f, err := ws.ReadFrame(r)
	if err != nil {
		b.Fatal(err)
	}
	p := string(f.Payload)
	i := strings.Index(p, `"conn":`)
	j := strings.IndexAny(p[i+7:], ",}")
	id, err := strconv.ParseInt(p[i+7:i+7+j], 10, 64)
	if err != nil || br != nil && br.Buffered() > 0 {
		b.Fatalf("hello %q: %v", p, err)
	}
	return conn, id
}

// drainCount reads server frames from c and counts them, allocating
// nothing per frame.
func drainCount(c net.Conn, n *atomic.Int64) {
	buf := make([]byte, 64<<10)
	var pend int // bytes of the current frame still to come
	var hdr []byte
	for {
		k, err := c.Read(buf)
		if err != nil {
			return
		}
		p := buf[:k]
		for len(p) > 0 {
			if pend > 0 {
				d := min(pend, len(p))
				pend -= d
				p = p[d:]
				if pend == 0 {
					n.Add(1)
				}
				continue
			}
			hdr = append(hdr, p[0])
			p = p[1:]
			if len(hdr) < 2 {
				continue
			}
			need := 2
			switch hdr[1] & 0x7f {
			case 126:
				need = 4
			case 127:
				need = 10
			}
			if len(hdr) < need {
				continue
			}
			switch need {
			case 2:
				pend = int(hdr[1] & 0x7f)
			case 4:
				pend = int(binary.BigEndian.Uint16(hdr[2:]))
			default:
				pend = int(binary.BigEndian.Uint64(hdr[2:]))
			}
			hdr = hdr[:0]
			if pend == 0 {
				n.Add(1)
			}
		}
	}
}

// More messages per second than -max-msg-rate get a rate_limited error
// (with their request id) and are dropped; the connection stays open.
func TestMessageRateLimit(t *testing.T) {
	e := start(t, func(c *Config) { c.MsgRate = 3 })
	c, _ := connect(t, e, "alice")
	for i := 0; i < 5; i++ {
		c.send(`{"type":"ping","rid":"r` + strconv.Itoa(i) + `"}`)
	}
	pongs, limited := 0, 0
	for i := 0; i < 5; i++ {
		var f struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
			RID    string `json:"rid"`
		}
		c.readJSON(&f)
		switch {
		case f.Type == "pong":
			pongs++
		case f.Type == "error" && f.Reason == "rate_limited":
			limited++
		default:
			t.Fatalf("frame %+v", f)
		}
	}
	// The five pings may straddle a second boundary: at least three are
	// answered, and everything over the limit in one second is refused.
	if pongs < 3 || pongs+limited != 5 {
		t.Fatalf("%d pongs, %d rate_limited", pongs, limited)
	}
}

// Malformed frames count against the rate like any other: a flood of them
// is refused at the same pace, not answered one by one.
func TestMessageRateLimitCountsBadFrames(t *testing.T) {
	e := start(t, func(c *Config) { c.MsgRate = 3 })
	c, _ := connect(t, e, "alice")
	const n = 20
	for range n {
		c.send(`[1]`)
	}
	bad, limited := 0, 0
	for range n {
		var f struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		}
		c.readJSON(&f)
		switch {
		case f.Type == "error" && f.Reason == "bad_json":
			bad++
		case f.Type == "error" && f.Reason == "rate_limited":
			limited++
		default:
			t.Fatalf("frame %+v", f)
		}
	}
	// Twenty frames sent at once cannot spread over the seven one-second
	// windows it would take for all of them to pass at three a second.
	if bad < 3 || limited == 0 || bad+limited != n {
		t.Fatalf("%d bad_json, %d rate_limited", bad, limited)
	}
}

// Control frames count against -max-msg-rate too: pings past it in one
// second go unanswered, and a connection that sends far more (four times
// the limit, at least 64 past it) is closed with 1008, whatever the frames.
// Before, pings, pongs and empty continuations were never counted, and a
// flood of them grew the gateway's memory without bound.
func TestFrameFloodCloses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame rawFrame
	}{
		{"pings", rawFrame{fin: true, op: 0x9, length: -1, payload: []byte("p")}},
		{"pongs", rawFrame{fin: true, op: 0xA, length: -1, payload: []byte("p")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, func(c *Config) { c.MsgRate = 10 })
			c, _ := connect(t, e, "alice")
			before := testutil.ToFloat64(e.m.Floods)
			frames := make([]rawFrame, 200)
			for i := range frames {
				frames[i] = tc.frame
			}
			c.raw(frames...)
			pongs := 0
			for {
				f, err := c.readFrame(5 * time.Second)
				if err != nil {
					t.Fatalf("no close frame after %d pongs: %v", pongs, err)
				}
				if f.Header.OpCode == ws.OpPong {
					pongs++
					continue
				}
				if f.Header.OpCode != ws.OpClose || len(f.Payload) < 2 ||
					ws.StatusCode(binary.BigEndian.Uint16(f.Payload)) != ws.StatusPolicyViolation || string(f.Payload[2:]) != "too many frames" {
					t.Fatalf("frame %d %q, want close 1008 \"too many frames\"", f.Header.OpCode, f.Payload)
				}
				break
			}
			// The burst may straddle a second boundary: at most two
			// windows' worth of pings are answered.
			if pongs > 20 {
				t.Fatalf("%d pings answered, limit 10 a second", pongs)
			}
			if got := testutil.ToFloat64(e.m.Floods) - before; got != 1 {
				t.Fatalf("flood_disconnects_total rose by %v, want 1", got)
			}
		})
	}
}

// A client that writes faster than its frames are handled is closed with
// 1008 once 8 MiB wait: netpoll reads the socket into memory whatever the
// handler keeps up with, so without the bound (and with the rate limit
// off) one connection could take the gateway's memory. The handler is
// held here by blocking the upstream producer.
func TestInputBacklogCloses(t *testing.T) {
	e := start(t, func(c *Config) { c.MsgRate = -1 })
	c, _ := connect(t, e, "alice")
	before := testutil.ToFloat64(e.m.Floods)
	body := strings.Repeat("x", 4000)
	frame := func(i int) rawFrame {
		return text(`{"type":"send","cmid":"c` + strconv.Itoa(i) + `","to":"bob","body":"` + body + `"}`)
	}
	e.up.mu.Lock()
	held := true
	defer func() {
		if held {
			e.up.mu.Unlock()
		}
	}()
	c.raw(frame(0)) // the handler blocks in the producer on this one
	wrote := make(chan error, 1)
	go func() {
		var b bytes.Buffer
		for i := 1; i <= 3000; i++ { // about 12 MB
			b.Write(frame(i).bytes())
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := c.conn.Write(b.Bytes())
		wrote <- err
	}()
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	e.up.mu.Unlock()
	held = false
	c.expectClose(ws.StatusPolicyViolation)
	if got := testutil.ToFloat64(e.m.Floods) - before; got != 1 {
		t.Fatalf("flood_disconnects_total rose by %v, want 1", got)
	}
	if n := len(e.up.records()); n >= 3001 {
		t.Fatalf("all %d sends were handled", n)
	}
}
