package downstream

import (
	"testing"

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
	l := &batchLookup{funcLookup: func(uid string, id int64) (Conn, bool) {
		c, ok := conns[id]
		if !ok || c.uid != uid {
			return nil, false
		}
		return c, true
	}}
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
