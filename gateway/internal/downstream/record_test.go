package downstream

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

type target struct {
	uid string
	id  int64
}

func parsedTargets(t *testing.T, r *Record) []target {
	t.Helper()
	var out []target
	if err := r.Targets(func(uid []byte, id int64) { out = append(out, target{string(uid), id}) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordParse(t *testing.T) {
	recs := []*events.DownRecord{
		{Kind: events.DownKind_PUSH, Targets: []*events.Target{{Uid: "a", ConnId: 1}, {Uid: "bob", ConnId: 1 << 40}, {}},
			Message: &common.Message{ConvId: "g:x", Seq: 9, Body: "hi"}},
		{Kind: events.DownKind_ACK, Ack: &events.Ack{ClientMsgId: "c", Seq: 3}},
		{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"x"}`), CloseCode: 4000, CloseReason: "kicked",
			Targets: []*events.Target{{Uid: "u", ConnId: 5}}},
	}
	for i, rec := range recs {
		var r Record
		if err := r.Parse(kafkax.Encode(rec)); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		got := parsedTargets(t, &r)
		if len(got) != len(rec.Targets) || r.Len() != len(rec.Targets) {
			t.Fatalf("%d: %d targets, want %d", i, len(got), len(rec.Targets))
		}
		for j, tg := range rec.Targets {
			if got[j] != (target{tg.Uid, tg.ConnId}) {
				t.Fatalf("%d: target %d = %+v", i, j, got[j])
			}
		}
		if r.Kind != rec.Kind || fmt.Sprint(r.Message) != fmt.Sprint(rec.Message) || fmt.Sprint(r.Ack) != fmt.Sprint(rec.Ack) ||
			string(r.Frame) != string(rec.Frame) || r.CloseCode != rec.CloseCode || r.CloseReason != rec.CloseReason {
			t.Fatalf("%d: decoded %+v, want %+v", i, r.DownRecord, *rec)
		}
	}
	// Truncated records fail cleanly at every length.
	full := kafkax.Encode(recs[0])
	for n := 0; n < len(full); n++ {
		var r Record
		if err := r.Parse(full[:n]); err == nil {
			if err := r.Targets(func([]byte, int64) {}); err == nil && r.Len() == len(recs[0].Targets) {
				t.Fatalf("truncated to %d of %d bytes accepted whole", n, len(full))
			}
		}
	}
}

// FRAME records read in place go out as one text frame; with a close code
// the targets are closed after it (a kick), and a close code a server may
// not send is refused.
func TestFrameRecordRaw(t *testing.T) {
	a := &fakeConn{uid: "a", routable: true}
	f := NewFanout(byConn(map[int64]*fakeConn{1: a}), nil)
	rec := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"kicked"}`), CloseCode: 4001, CloseReason: "bye",
		Targets: []*events.Target{{Uid: "a", ConnId: 1}}}
	if n, err := f.DeliverRaw(kafkax.Encode(rec)); err != nil || n != 1 {
		t.Fatalf("delivered %d %v", n, err)
	}
	h, hl, err := wsframe.ParseHeader(a.frames[0])
	if err != nil || h.OpCode != ws.OpText || string(a.frames[0][hl:]) != `{"type":"kicked"}` || a.closeCode != 4001 || a.reason != "bye" {
		t.Fatalf("frame %q closed %d %q", a.frames[0], a.closeCode, a.reason)
	}
	// A close code a server may not send is refused, nothing delivered.
	for _, bad := range []int32{1005, 1006, 1015, 999, 5000, 2000} {
		rec.CloseCode = bad
		if n, err := f.DeliverRaw(kafkax.Encode(rec)); err == nil || n != 0 {
			t.Fatalf("close code %d accepted", bad)
		}
	}
	if _, err := f.DeliverRaw(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_FRAME})); err == nil {
		t.Fatal("empty frame accepted")
	}
}

// FuzzRecord checks the in-place target reader against the generated
// decoder: whenever both accept a record they must agree, and no input may
// panic.
func FuzzRecord(f *testing.F) {
	f.Add(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH,
		Targets: []*events.Target{{Uid: "a", ConnId: 1}, {Uid: "b", ConnId: 2}}, Message: &common.Message{Body: "x"}}))
	f.Add(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte("{}"), CloseCode: 1000}))
	f.Add([]byte{0x0f, 0x00, 0x02, 0x0c, 0x7f, 0xff, 0xff, 0xff})
	f.Add(binary.BigEndian.AppendUint32([]byte{0x0f, 0x00, 0x02, 0x0c}, 3))
	f.Add(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: [][]byte{{1, 2, 3}, {}, []byte("x")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if r.Parse(b) != nil {
			return
		}
		var recs [][]byte
		recErr := r.EachRecord(func(rec []byte) { recs = append(recs, rec) })
		var got []target
		if r.Targets(func(uid []byte, id int64) { got = append(got, target{string(uid), id}) }) != nil {
			return
		}
		ref := events.NewDownRecord()
		if !decodes(b, ref) {
			return
		}
		if len(got) != len(ref.Targets) {
			t.Fatalf("%d targets, generated decoder %d", len(got), len(ref.Targets))
		}
		if recErr != nil || len(recs) != len(ref.Records) {
			t.Fatalf("%d records (%v), generated decoder %d", len(recs), recErr, len(ref.Records))
		}
		for i, rec := range ref.Records {
			if string(recs[i]) != string(rec) {
				t.Fatalf("record %d: %x vs %x", i, recs[i], rec)
			}
		}
		for i, tg := range ref.Targets {
			if got[i] != (target{tg.Uid, tg.ConnId}) {
				t.Fatalf("target %d: %+v vs %+v", i, got[i], tg)
			}
		}
	})
}

// decodes runs the generated decoder, which panics on some malformed input
// (see recoverMalformed); a panic counts as a rejection.
func decodes(b []byte, ref *events.DownRecord) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return kafkax.Decode(b, ref) == nil
}
