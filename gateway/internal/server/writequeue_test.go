package server

import (
	"context"
	"encoding/binary"
	"fmt"
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
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// readAll reads n data frames from c; it fails on a close frame (giving
// its code and reason) or when a frame is 3 s late.
func readAll(c *client, n int) error {
	for got := 0; got < n; got++ {
		f, err := c.readFrame(3 * time.Second)
		if err != nil {
			return fmt.Errorf("got %d of %d frames: %w", got, n, err)
		}
		if f.Header.OpCode == ws.OpClose {
			return fmt.Errorf("closed with %d %q after %d of %d frames; the client was reading",
				binary.BigEndian.Uint16(f.Payload), f.Payload[2:], got, n)
		}
	}
	return nil
}

// One BATCH record (as logic packs them, up to 256 KiB) may carry more
// acks for one connection than -write-queue, and the fan-out queues them
// faster than the connection's writer starts. A client that reads is not
// slow: it gets every ack, in order, and is not closed with 1008 (the
// goroutine queuing writes the full queue to the socket itself). Checked
// at the default queue and at the smallest one Validate accepts.
func TestBatchOverWriteQueueNotSlow(t *testing.T) {
	for _, tc := range []struct{ queue, acks int }{{256, 300}, {256, 1200}, {32, 100}} {
		t.Run(fmt.Sprintf("queue%d_acks%d", tc.queue, tc.acks), func(t *testing.T) {
			e := start(t, func(c *Config) { c.WriteQueue = tc.queue })
			c, h := connect(t, e, "alice")
			recs := make([][]byte, 0, tc.acks)
			for i := 0; i < tc.acks; i++ {
				recs = append(recs, kafkax.Encode(&events.DownRecord{Kind: events.DownKind_ACK,
					Targets: []*events.Target{{Uid: "alice", ConnId: h.ConnID}},
					Ack:     &events.Ack{ClientMsgId: "c" + strconv.Itoa(i), ConvId: "p:alice:bob", Seq: int64(i + 1), CreatedAtMs: 1}}))
			}
			batch := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})
			// Every ack is accepted, none dropped for a full queue.
			if n, err := e.srv.Fanout().DeliverRaw(batch); n != tc.acks || err != nil {
				t.Fatalf("DeliverRaw accepted %d of %d acks (err %v)", n, tc.acks, err)
			}
			// The client reads only now, and gets them all, in order.
			for i := 0; i < tc.acks; i++ {
				var a struct {
					Type string `json:"type"`
					CMID string `json:"cmid"`
				}
				c.readJSON(&a)
				if a.Type != "ack" || a.CMID != "c"+strconv.Itoa(i) {
					t.Fatalf("frame %d is %+v, want the ack of c%d", i, a, i)
				}
			}
			if n := testutil.ToFloat64(e.m.SlowClients); n != 0 {
				t.Fatalf("%v slow clients counted", n)
			}
		})
	}
}

// Two BATCH records of 200 pushes each for one reading client, delivered
// back to back as the consumer goroutine does with consecutive Kafka
// messages: the second is queued while the writer started by the first
// may not have run. All 400 arrive; no 1008.
func TestConsecutiveBatchesNotSlow(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "alice")
	mk := func(base int) []byte {
		recs := make([][]byte, 0, 200)
		for i := 0; i < 200; i++ {
			r := pushTo([]*events.Target{{Uid: "alice", ConnId: h.ConnID}}, "hi")
			r.Message.Seq = int64(base + i + 1)
			recs = append(recs, kafkax.Encode(r))
		}
		return kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})
	}
	b1, b2 := mk(0), mk(200)
	n1, _ := e.srv.Fanout().DeliverRaw(b1)
	n2, _ := e.srv.Fanout().DeliverRaw(b2)
	if n1+n2 != 400 {
		t.Fatalf("accepted %d + %d of 400 pushes", n1, n2)
	}
	if err := readAll(c, 400); err != nil {
		t.Fatal(err)
	}
}

// bigSync answers every sync with a full page: 200 messages of 4096 bytes,
// what logic returns for a busy conversation at the default limits (about
// 850 KB as one frame).
type bigSync struct {
	*fakeLogic
	calls *atomic.Int64
}

func (b bigSync) Sync(_ context.Context, req *logic.SyncReq) (*logic.SyncResp, error) {
	defer b.calls.Add(1)
	body := strings.Repeat("b", 4096)
	out := &logic.SyncResp{HasMore: true, LastSeq: 100000}
	for i := int64(1); i <= int64(req.Limit); i++ {
		out.Messages = append(out.Messages, &common.Message{ConvId: req.ConvId, Seq: req.AfterSeq + i,
			Sender: "bob", Recipient: req.Uid, ClientMsgId: "c" + strconv.FormatInt(i, 10), ContentType: "text", Body: body, CreatedAtMs: 1})
	}
	return out, nil
}

// A client that asks for 250 full sync pages and never reads: fewer frames
// than -write-queue, but about 200 MiB. The byte bound (-write-queue-bytes,
// 4 MiB) closes it with 1008 long before: it is counted as slow, the heap
// it pins comes down to a few MiB (the bound plus one page) while its
// writer still waits on it, and the close frame follows what was already
// written.
func TestWriteQueueBytesBoundsSlowClient(t *testing.T) {
	var calls atomic.Int64
	e := startDeps(t, func(c *Config) { c.WriteTimeout = 30 * time.Second },
		func(d *Deps) { d.Logic = bigSync{&fakeLogic{}, &calls} })
	c, _ := connect(t, e, "alice")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	const n = 250 // under the 256-frame queue
	for i := 0; i < n; i++ {
		c.send(`{"type":"sync","rid":"r` + strconv.Itoa(i) + `","conv":"p:alice:bob","limit":200}`)
	}
	eventually(t, "slow client counted", func() bool { return testutil.ToFloat64(e.m.SlowClients) >= 1 })
	// The other replies go into a closed queue and are garbage once the
	// RPC workers are done with them; what stays is what waits for the
	// client (its writer blocks in a flush for the 30 s write timeout).
	deadline := time.Now().Add(30 * time.Second) // slow under -race
	for calls.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d syncs answered", calls.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var held int64
	for {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		held = int64(ms.HeapAlloc) - int64(before)
		if held <= 16<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one slow client pins %d MiB", held>>20)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("heap held for one non-reading client after %d sync requests: %d MiB", n, held>>20)
	// The client finally reads: what was written, then 1008.
	c.expectClose(ws.StatusPolicyViolation)
	eventually(t, "connection gone", func() bool { return e.srv.Conns() == 0 })
}

// A burst of more bytes than -write-queue-bytes to a client that reads is
// not slow either: the byte bound, like the frame bound, only counts
// while the socket is backed up. 400 pushes of 1 KiB (about 450 KB, what
// the socket buffers take) in one BATCH, bound 64 KiB.
func TestBatchOverWriteQueueBytesNotSlow(t *testing.T) {
	e := start(t, func(c *Config) { c.WriteQueueBytes = 64 << 10; c.WriteQueue = 1024 })
	c, h := connect(t, e, "alice")
	recs := make([][]byte, 0, 400)
	for i := 0; i < 400; i++ {
		r := pushTo([]*events.Target{{Uid: "alice", ConnId: h.ConnID}}, strings.Repeat("x", 1024))
		r.Message.Seq = int64(i + 1)
		recs = append(recs, kafkax.Encode(r))
	}
	got := make(chan error, 1)
	go func() { got <- readAll(c, 400) }()
	if n, err := e.srv.Fanout().DeliverRaw(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})); n != 400 || err != nil {
		t.Fatalf("DeliverRaw accepted %d of 400 (err %v)", n, err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
