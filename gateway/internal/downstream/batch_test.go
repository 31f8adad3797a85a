package downstream

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// batchLookup is a Lookup whose connections are queued to through a
// Batch, as the gateway's sessions are.
type batchLookup struct {
	funcLookup
	batches []*fakeBatch
}

func (l *batchLookup) Batch() Batch {
	b := &fakeBatch{}
	l.batches = append(l.batches, b)
	return b
}

type fakeBatch struct {
	sent    []Conn
	flushed int
}

func (b *fakeBatch) Send(c Conn, frame []byte) error {
	if b.flushed > 0 {
		panic("batch used after Flush")
	}
	b.sent = append(b.sent, c)
	return c.Send(frame)
}

func (b *fakeBatch) Flush() { b.flushed++ }

// With a Batcher lookup, every target of a record is queued through one
// batch, flushed once after the last target (kicks included), whether the
// record comes decoded or raw.
func TestDeliverThroughBatch(t *testing.T) {
	a, b := &fakeConn{uid: "u1", routable: true}, &fakeConn{uid: "u2", routable: true}
	conns := map[int64]*fakeConn{1: a, 2: b}
	l := &batchLookup{funcLookup: byConn(conns)}
	f := NewFanout(l, nil)
	rec := &events.DownRecord{Kind: events.DownKind_PUSH,
		Targets: []*events.Target{{Uid: "u1", ConnId: 1}, {Uid: "u2", ConnId: 2}, {Uid: "u3", ConnId: 3}},
		Message: &common.Message{ConvId: "g:x", Seq: 1, Body: "x"}}
	if n, err := f.Deliver(rec); err != nil || n != 2 {
		t.Fatalf("Deliver = %d, %v", n, err)
	}
	if n, err := f.DeliverRaw(kafkax.Encode(rec)); err != nil || n != 2 {
		t.Fatalf("DeliverRaw = %d, %v", n, err)
	}
	kick := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"kick"}`),
		CloseCode: 4001, CloseReason: "replaced", Targets: []*events.Target{{Uid: "u1", ConnId: 1}}}
	if n, err := f.Deliver(kick); err != nil || n != 1 || a.closeCode != 4001 {
		t.Fatalf("kick = %d, %v, code %d", n, err, a.closeCode)
	}
	if len(l.batches) != 3 {
		t.Fatalf("%d batches for 3 records", len(l.batches))
	}
	for i, bt := range l.batches {
		want := 2
		if i == 2 {
			want = 1
		}
		if len(bt.sent) != want || bt.flushed != 1 {
			t.Fatalf("batch %d: %d sends, flushed %d times", i, len(bt.sent), bt.flushed)
		}
	}
	if len(a.frames) != 3 || len(b.frames) != 2 {
		t.Fatalf("frames: %d and %d", len(a.frames), len(b.frames))
	}
}

// A BATCH record's records are delivered in order through one batch,
// flushed once at the end; a malformed record, an unknown kind and a
// batch nested in the batch are reported and skipped, the others still
// delivered.
func TestBatchRecord(t *testing.T) {
	a, b := &fakeConn{uid: "u1", routable: true}, &fakeConn{uid: "u2", routable: true}
	conns := map[int64]*fakeConn{1: a, 2: b}
	l := &batchLookup{funcLookup: byConn(conns)}
	f := NewFanout(l, nil)
	push := func(seq int64, targets ...*events.Target) []byte {
		return kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Targets: targets,
			Message: &common.Message{ConvId: "p:u1:u2", Seq: seq, Sender: "u1", Body: "x"}})
	}
	ack := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_ACK, Targets: []*events.Target{{Uid: "u1", ConnId: 1}},
		Ack: &events.Ack{ClientMsgId: "c1", ConvId: "p:u1:u2", Seq: 1}})
	nested := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: [][]byte{push(9, &events.Target{Uid: "u2", ConnId: 2})}})
	recs := [][]byte{
		ack,
		push(1, &events.Target{Uid: "u2", ConnId: 2}),
		[]byte{0xff, 0x00}, // malformed
		kafkax.Encode(&events.DownRecord{Kind: 77, Targets: []*events.Target{{Uid: "u2", ConnId: 2}}}),
		nested,
		push(2, &events.Target{Uid: "u2", ConnId: 2}, &events.Target{Uid: "u1", ConnId: 1}),
	}
	n, err := f.DeliverRaw(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs}))
	if n != 4 {
		t.Fatalf("delivered %d frames, want 4", n)
	}
	if err == nil {
		t.Fatal("no error for the bad records")
	}
	for _, want := range []string{"ReadFieldBegin", "unknown downstream kind 77", "inside a batch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if len(l.batches) != 1 || l.batches[0].flushed != 1 || len(l.batches[0].sent) != 4 {
		t.Fatalf("batches: %d, first flushed %d times with %d sends", len(l.batches), l.batches[0].flushed, len(l.batches[0].sent))
	}
	if len(a.frames) != 2 || decode(t, a.frames[0])["type"] != "ack" || decode(t, a.frames[1])["seq"] != 2.0 {
		t.Fatalf("u1 frames: %d", len(a.frames))
	}
	if len(b.frames) != 2 || decode(t, b.frames[0])["seq"] != 1.0 || decode(t, b.frames[1])["seq"] != 2.0 {
		t.Fatalf("u2 frames: %d", len(b.frames))
	}
}

// The test-only push dropping works inside batches: the first push is
// dropped, the ack and the later push are delivered.
func TestDropPushInsideBatch(t *testing.T) {
	a := &fakeConn{uid: "u1", routable: true}
	f := NewFanout(byConn(map[int64]*fakeConn{1: a}), nil)
	c := &Consumer{fan: f, drop: 1, log: slog.New(slog.DiscardHandler)}
	to := []*events.Target{{Uid: "u1", ConnId: 1}}
	rec := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: [][]byte{
		kafkax.Encode(&events.DownRecord{Kind: events.DownKind_ACK, Targets: to, Ack: &events.Ack{ClientMsgId: "c", ConvId: "p:u1:u2", Seq: 1}}),
		kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Targets: to, Message: &common.Message{ConvId: "p:u1:u2", Seq: 1}}),
		kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Targets: to, Message: &common.Message{ConvId: "p:u1:u2", Seq: 2}}),
	}})
	c.handle(&kafka.Message{Value: rec})
	if len(a.frames) != 2 || decode(t, a.frames[0])["type"] != "ack" || decode(t, a.frames[1])["seq"] != 2.0 || c.drop != 0 {
		t.Fatalf("%d frames, %d drops left", len(a.frames), c.drop)
	}
}

// A long BATCH record starts its connections' writers every flushEvery
// records, so that the frames waiting for a writer never pile up to a
// connection's write queue limit.
func TestLongBatchFlushesAsItGoes(t *testing.T) {
	a := &fakeConn{uid: "u1", routable: true}
	l := &batchLookup{funcLookup: byConn(map[int64]*fakeConn{1: a})}
	f := NewFanout(l, nil)
	const n = 2*flushEvery + 3
	var recs [][]byte
	for i := range n {
		recs = append(recs, kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Targets: []*events.Target{{Uid: "u1", ConnId: 1}},
			Message: &common.Message{ConvId: "p:u1:u2", Seq: int64(i + 1)}}))
	}
	if sent, err := f.DeliverRaw(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})); sent != n || err != nil {
		t.Fatalf("delivered %d (%v), want %d", sent, err, n)
	}
	var sends []int
	for _, b := range l.batches {
		if b.flushed != 1 {
			t.Fatalf("a batch flushed %d times", b.flushed)
		}
		sends = append(sends, len(b.sent))
	}
	if fmt.Sprint(sends) != fmt.Sprint([]int{flushEvery, flushEvery, 3}) {
		t.Fatalf("frames per flush %v", sends)
	}
	for i, fr := range a.frames {
		if decode(t, fr)["seq"] != float64(i+1) {
			t.Fatalf("frame %d out of order", i)
		}
	}
}
