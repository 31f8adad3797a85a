package downstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

type fakeConn struct {
	uid       string
	routable  bool
	frames    [][]byte
	err       error
	closeCode uint16
	reason    string
	binary    bool
}

func (c *fakeConn) Send(f []byte) error {
	if c.err != nil {
		return c.err
	}
	c.frames = append(c.frames, f)
	return nil
}
func (c *fakeConn) Routable() bool { return c.routable }
func (c *fakeConn) Binary() bool   { return c.binary }
func (c *fakeConn) CloseWith(code uint16, reason string) {
	c.closeCode, c.reason = code, reason
}

func decode(t *testing.T, frame []byte) map[string]any {
	t.Helper()
	h, n, err := wsframe.ParseHeader(frame)
	if err != nil || h.OpCode != ws.OpText || !h.Fin || h.Masked || int(h.Length) != len(frame)-n {
		t.Fatalf("bad frame header %+v %v", h, err)
	}
	var m map[string]any
	if err := json.Unmarshal(frame[n:], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncode(t *testing.T) {
	cases := []struct {
		rec  *events.DownRecord
		want map[string]any
	}{
		{&events.DownRecord{Kind: events.DownKind_PUSH, Message: &common.Message{ConvId: "p:a:b", Seq: 3, Sender: "a", Recipient: "b", ClientMsgId: "c", ContentType: "text", Body: "hi", CreatedAtMs: 5}},
			map[string]any{"type": "msg", "conv": "p:a:b", "seq": 3.0, "from": "a", "to": "b", "cmid": "c", "content_type": "text", "body": "hi", "ts": 5.0}},
		{&events.DownRecord{Kind: events.DownKind_ACK, Ack: &events.Ack{ClientMsgId: "c", ConvId: "p:a:b", Seq: 3, CreatedAtMs: 5, Duplicate: true}},
			map[string]any{"type": "ack", "cmid": "c", "conv": "p:a:b", "seq": 3.0, "ts": 5.0, "dup": true}},
		{&events.DownRecord{Kind: events.DownKind_ERROR, Error: &events.ErrorEvent{Code: 3001, Message: "no such user", ClientMsgId: "c"}},
			map[string]any{"type": "error", "code": 3001.0, "reason": "user_not_found", "message": "no such user", "cmid": "c"}},
	}
	for _, tc := range cases {
		f, _, err := Encode(tc.rec)
		if err != nil {
			t.Fatal(err)
		}
		got := decode(t, f)
		if len(got) != len(tc.want) {
			t.Fatalf("got %v, want %v", got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Fatalf("%s: got %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
	}
	for _, bad := range []*events.DownRecord{{Kind: events.DownKind_PUSH}, {Kind: events.DownKind_ACK}, {Kind: events.DownKind_ERROR}, {Kind: 99}} {
		if _, _, err := Encode(bad); err == nil {
			t.Fatalf("record %+v accepted", bad)
		}
	}
}

func TestDeliverChecksUIDAndShareFrame(t *testing.T) {
	conns := map[int64]*fakeConn{
		1: {uid: "a", routable: true},
		2: {uid: "b", routable: true},
		3: {uid: "c", routable: false}, // hello not sent yet
		4: {uid: "d", routable: true, err: errors.New("closed")},
	}
	f := NewFanout(byConn(conns), nil)
	rec := &events.DownRecord{Kind: events.DownKind_PUSH,
		Targets: []*events.Target{{Uid: "a", ConnId: 1}, {Uid: "b", ConnId: 2}, {Uid: "a", ConnId: 2}, {Uid: "c", ConnId: 3}, {Uid: "d", ConnId: 4}, nil},
		Message: &common.Message{ConvId: "g:x", Seq: 1, Body: "x"}}
	n, err := f.Deliver(rec)
	if err != nil || n != 2 {
		t.Fatalf("delivered %d %v, want 2", n, err)
	}
	if len(conns[1].frames) != 1 || len(conns[2].frames) != 1 || len(conns[3].frames) != 0 {
		t.Fatal("wrong targets got the frame")
	}
	// One encoding shared by every target.
	if &conns[1].frames[0][0] != &conns[2].frames[0][0] {
		t.Fatal("frame encoded per target")
	}
}

// Targets that chose MessagePack share one binary encoding of the record;
// the others share its text frame.
func TestDeliverEncodesMsgpackOnce(t *testing.T) {
	conns := map[int64]*fakeConn{
		1: {uid: "a", routable: true},
		2: {uid: "b", routable: true, binary: true},
		3: {uid: "c", routable: true, binary: true},
	}
	f := NewFanout(byConn(conns), nil)
	rec := &events.DownRecord{Kind: events.DownKind_PUSH,
		Targets: []*events.Target{{Uid: "a", ConnId: 1}, {Uid: "b", ConnId: 2}, {Uid: "c", ConnId: 3}},
		Message: &common.Message{ConvId: "g:x", Seq: 1, Sender: "a", Body: "x"}}
	if n, err := f.Deliver(rec); err != nil || n != 3 {
		t.Fatalf("delivered %d %v, want 3", n, err)
	}
	text, bin := conns[1].frames[0], conns[2].frames[0]
	if &bin[0] != &conns[3].frames[0][0] {
		t.Fatal("MessagePack frame encoded per target")
	}
	h, n, err := wsframe.ParseHeader(bin)
	if err != nil || h.OpCode != ws.OpBinary || !h.Fin || int(h.Length) != len(bin)-n {
		t.Fatalf("bad binary frame header %+v %v", h, err)
	}
	js, err := protocol.AppendJSONFromMsgpack(nil, bin[n:])
	if err != nil {
		t.Fatal(err)
	}
	if want := text[len(text)-len(js):]; string(js) != string(want) {
		t.Fatalf("binary frame holds %s, text frame %s", js, want)
	}
}

// In a BATCH record each inner record has its own MessagePack frame: a
// binary target gets every record, in order, each the binary form of its
// own text frame.
func TestBatchWithMsgpackTargets(t *testing.T) {
	a, b := &fakeConn{uid: "u1", routable: true}, &fakeConn{uid: "u2", routable: true, binary: true}
	f := NewFanout(byConn(map[int64]*fakeConn{1: a, 2: b}), nil)
	targets := []*events.Target{{Uid: "u1", ConnId: 1}, {Uid: "u2", ConnId: 2}}
	var recs [][]byte
	for seq := int64(1); seq <= 3; seq++ {
		recs = append(recs, kafkax.Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Targets: targets,
			Message: &common.Message{ConvId: "g:x", Seq: seq, Sender: "u1", Body: fmt.Sprint("m", seq)}}))
	}
	if n, err := f.DeliverRaw(kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})); err != nil || n != 6 {
		t.Fatalf("delivered %d %v, want 6", n, err)
	}
	if len(a.frames) != 3 || len(b.frames) != 3 {
		t.Fatalf("frames: %d text, %d binary", len(a.frames), len(b.frames))
	}
	for i := range 3 {
		h, n, err := wsframe.ParseHeader(b.frames[i])
		if err != nil || h.OpCode != ws.OpBinary {
			t.Fatalf("frame %d: %+v %v", i, h, err)
		}
		js, err := protocol.AppendJSONFromMsgpack(nil, b.frames[i][n:])
		if err != nil || decode(t, a.frames[i])["seq"] != float64(i+1) || !strings.HasSuffix(string(a.frames[i]), string(js)) {
			t.Fatalf("frame %d: binary %s (%v), text %s", i, js, err, a.frames[i])
		}
	}
}

// A FRAME record whose JSON has no MessagePack form (a number beyond
// float64: encoding/json never writes one, but json.Valid accepts it) is
// not sent to a binary target, and its kick closes the target all the same.
func TestKickReachesBinaryTargetWithoutFrame(t *testing.T) {
	a, b := &fakeConn{uid: "u1", routable: true}, &fakeConn{uid: "u2", routable: true, binary: true}
	f := NewFanout(byConn(map[int64]*fakeConn{1: a, 2: b}), nil)
	rec := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"kick","reason":"replaced","n":1e400}`),
		CloseCode: 4001, CloseReason: "replaced", Targets: []*events.Target{{Uid: "u1", ConnId: 1}, {Uid: "u2", ConnId: 2}}}
	if n, err := f.Deliver(rec); err != nil || n != 1 {
		t.Fatalf("delivered %d %v, want 1", n, err)
	}
	if len(a.frames) != 1 || len(b.frames) != 0 || a.closeCode != 4001 || b.closeCode != 4001 {
		t.Fatalf("text target %d frames close %d; binary target %d frames close %d", len(a.frames), a.closeCode, len(b.frames), b.closeCode)
	}
}

// A FRAME record is written as logic encoded it, once for all targets,
// and a close code closes each target after the frame.
func TestDeliverFrameAndKick(t *testing.T) {
	a, b := &fakeConn{uid: "u1", routable: true}, &fakeConn{uid: "u2", routable: true}
	conns := map[int64]*fakeConn{1: a, 2: b}
	f := NewFanout(byConn(conns), nil)
	rec := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"typing","conv":"p:u1:u2","from":"u3"}`),
		Targets: []*events.Target{{Uid: "u1", ConnId: 1}, {Uid: "u2", ConnId: 2}}}
	if n, err := f.Deliver(rec); err != nil || n != 2 {
		t.Fatalf("Deliver = %d, %v", n, err)
	}
	if m := decode(t, a.frames[0]); m["type"] != "typing" || m["from"] != "u3" {
		t.Fatalf("frame = %v", m)
	}
	if &a.frames[0][0] != &b.frames[0][0] || a.closeCode != 0 {
		t.Fatal("frame encoded per target, or closed without a close code")
	}
	kick := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"kick","reason":"replaced"}`),
		CloseCode: 4001, CloseReason: "replaced", Targets: []*events.Target{{Uid: "u1", ConnId: 1}}}
	if _, err := f.Deliver(kick); err != nil || a.closeCode != 4001 || a.reason != "replaced" || b.closeCode != 0 {
		t.Fatalf("kick: err %v, codes %d %d", err, a.closeCode, b.closeCode)
	}
	if _, err := f.Deliver(&events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte("{not json"), Targets: kick.Targets}); err == nil {
		t.Fatal("a frame that is not JSON was delivered")
	}
}

// A kick reaches a connection that is not open yet (logic may refuse a
// login in the Connect call that registers it, and its kick may come
// before the call returns), while a plain push still skips it.
func TestKickReachesRegisteringConnection(t *testing.T) {
	c := &fakeConn{uid: "u1"} // registering: not routable
	f := NewFanout(byConn(map[int64]*fakeConn{1: c}), nil)
	targets := []*events.Target{{Uid: "u1", ConnId: 1}}
	if n, err := f.Deliver(&events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"typing","conv":"p:u1:u2","from":"u2"}`), Targets: targets}); err != nil || n != 0 || len(c.frames) != 0 {
		t.Fatalf("a push reached a connection not yet open: %d, %v", n, err)
	}
	kick := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: []byte(`{"type":"kick","reason":"replaced","device":"phone-b"}`),
		CloseCode: 4001, CloseReason: "replaced", Targets: targets}
	if n, err := f.Deliver(kick); err != nil || n != 1 || c.closeCode != 4001 || c.reason != "replaced" {
		t.Fatalf("kick to a registering connection: %d, %v, closed %d %q", n, err, c.closeCode, c.reason)
	}
}

// funcLookup adapts a function to Lookup.
type funcLookup func(uid string, id int64) (Conn, bool)

// byConn finds connections by conn id, checking the uid as the gateway's
// table does.
func byConn(conns map[int64]*fakeConn) funcLookup {
	return func(uid string, id int64) (Conn, bool) {
		c, ok := conns[id]
		if !ok || c.uid != uid {
			return nil, false
		}
		return c, true
	}
}

func (f funcLookup) Push(uid string, id int64) (Conn, bool)      { return f(uid, id) }
func (f funcLookup) PushBytes(uid []byte, id int64) (Conn, bool) { return f(string(uid), id) }

type countConn struct {
	n      int
	binary bool
}

func (c *countConn) Send([]byte) error        { c.n++; return nil }
func (c *countConn) Routable() bool           { return true }
func (c *countConn) Binary() bool             { return c.binary }
func (c *countConn) CloseWith(uint16, string) {}

// mapLookup finds targets in a map without allocating, as the connection
// table does.
type mapLookup map[string]map[int64]Conn

func (m mapLookup) Push(uid string, id int64) (Conn, bool) {
	c, ok := m[uid][id]
	return c, ok
}
func (m mapLookup) PushBytes(uid []byte, id int64) (Conn, bool) {
	c, ok := m[string(uid)][id]
	return c, ok
}

func benchRecord(n int) (mapLookup, *events.DownRecord) { return benchRecordOf(n, false) }

// benchRecordOf is benchRecord with targets that chose MessagePack when
// binary is set.
func benchRecordOf(n int, binary bool) (mapLookup, *events.DownRecord) {
	m := mapLookup{}
	var targets []*events.Target
	for i := 0; i < n; i++ {
		uid := fmt.Sprintf("user-%d", i)
		m[uid] = map[int64]Conn{int64(i): &countConn{binary: binary}}
		targets = append(targets, &events.Target{Uid: uid, ConnId: int64(i)})
	}
	return m, &events.DownRecord{Kind: events.DownKind_PUSH, Targets: targets,
		Message: &common.Message{ConvId: "g:room", Seq: 1, Sender: "a", ContentType: "text", Body: strings.Repeat("m", 100)}}
}

// BenchmarkDeliverRaw measures one push record for 1,000 targets straight
// from its Kafka bytes: parse, encode the frame once, look up and queue to
// every target. allocs/target shows the targets cost no allocation: the
// few allocations per op are the record's own (its frame and message).
func BenchmarkDeliverRaw(b *testing.B) {
	b.Run("json", func(b *testing.B) { benchDeliverRaw(b, false) })
	// MessagePack targets: one more encoding per record (the binary
	// frame), still nothing per target.
	b.Run("msgpack", func(b *testing.B) { benchDeliverRaw(b, true) })
}

func benchDeliverRaw(b *testing.B, binary bool) {
	m, rec := benchRecordOf(1000, binary)
	raw := kafkax.Encode(rec)
	f := NewFanout(m, nil)
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for b.Loop() {
		if n, err := f.DeliverRaw(raw); err != nil || n != 1000 {
			b.Fatal(n, err)
		}
	}
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N)/1000, "allocs/target")
}

// BenchmarkDeliverDecoded is the same record decoded by the generated Thrift
// code first, for comparison: two allocations per target.
func BenchmarkDeliverDecoded(b *testing.B) {
	m, rec := benchRecord(1000)
	raw := kafkax.Encode(rec)
	f := NewFanout(m, nil)
	b.ReportAllocs()
	for b.Loop() {
		r := events.NewDownRecord()
		if err := kafkax.Decode(raw, r); err != nil {
			b.Fatal(err)
		}
		if n, err := f.Deliver(r); err != nil || n != 1000 {
			b.Fatal(n, err)
		}
	}
}
