package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// connectDevice dials as uid on device and waits for hello.
func connectDevice(t *testing.T, e *env, uid, device string) (*client, hello) {
	t.Helper()
	c := dial(t, e.addr, token(t, uid, device, time.Hour))
	var h hello
	c.readJSON(&h)
	if h.Type != "hello" || h.UID != uid || h.Device != device {
		t.Fatalf("first frame %+v, want hello for %s/%s", h, uid, device)
	}
	return c, h
}

// set changes the fake under its lock.
func (f *fakeLogic) set(fn func(*fakeLogic)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// barrier sends a frame the gateway answers at once and reads the answer:
// every frame sent before it has then been handled (a connection's frames
// are handled in order).
func (c *client) barrier() {
	c.t.Helper()
	c.send(`{"type":"teleport","rid":"barrier"}`)
	var ef errFrame
	c.readJSON(&ef)
	if ef.Type != "error" || ef.RID != "barrier" {
		c.t.Fatalf("barrier answered %+v", ef)
	}
}

// expectRecord checks rec against want, taking want's unset common
// fields (who sent it, from where) from the connection.
func expectRecord(t *testing.T, rec *events.UpRecord, want events.UpRecord, uid string, connID int64) {
	t.Helper()
	want.Sender, want.Device, want.GatewayId, want.ConnId = uid, "phone", "gwtest", connID
	if rec.ReceivedAtMs < time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("received_at_ms %d", rec.ReceivedAtMs)
	}
	want.ReceivedAtMs = rec.ReceivedAtMs
	if *rec != want {
		t.Fatalf("record %+v\nwant   %+v", *rec, want)
	}
}

func TestGroupSendProducesUpRecord(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "alice")
	c.send(`{"type":"send","cmid":"g1","group":"team-42","content_type":"text/markdown","body":"hi team"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	expectRecord(t, e.up.records()[0], events.UpRecord{Kind: events.UpKind_SEND, ClientMsgId: "g1",
		ConvId: "g:team-42", ContentType: "text/markdown", Body: "hi team"}, "alice", h.ConnID)
	// No answer from the gateway: logic acks once the message is stored.
	c.expectNothing(100 * time.Millisecond)
}

func TestCursorTypingRecallRecords(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "alice")
	c.send(`{"type":"delivered","conv":"p:alice:bob","seq":42}`)
	c.send(`{"type":"read","conv":"g:team-42","seq":0}`)
	c.send(`{"type":"typing","to":"bob"}`)
	c.send(`{"type":"recall","cmid":"r-77","conv":"p:alice:bob","seq":41}`)
	c.barrier()
	recs := e.up.records()
	want := []events.UpRecord{
		{Kind: events.UpKind_DELIVERED, ConvId: "p:alice:bob", Seq: 42},
		{Kind: events.UpKind_READ, ConvId: "g:team-42"},
		{Kind: events.UpKind_TYPING, To: "bob", ConvId: "p:alice:bob"},
		{Kind: events.UpKind_RECALL, ClientMsgId: "r-77", ConvId: "p:alice:bob", Seq: 41},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i := range want {
		expectRecord(t, recs[i], want[i], "alice", h.ConnID)
	}
	// None of them is answered by the gateway (the barrier's error came
	// first and alone).
	c.expectNothing(100 * time.Millisecond)
}

func TestNewFramesValidation(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	long := strings.Repeat("c", 65)
	cases := []struct {
		frame string
		code  errcode.Code
		cmid  string
		rid   string
	}{
		// send to a group
		{`{"type":"send","cmid":"s1","to":"bob","group":"team","body":"x"}`, errcode.BadField, "s1", ""},
		{`{"type":"send","cmid":"s2","group":"bad:group","body":"x"}`, errcode.BadField, "s2", ""},
		{`{"type":"send","cmid":"s3","group":"team","body":""}`, errcode.BadField, "s3", ""},
		{`{"type":"send","cmid":"s4","group":"team","body":"` + strings.Repeat("b", 4097) + `"}`, errcode.TooLarge, "s4", ""},
		{`{"type":"send","cmid":"s5","group":"team","body":"x","content_type":"no spaces"}`, errcode.BadField, "s5", ""},
		{`{"type":"send","cmid":"s6","to":"bob","body":"x","content_type":"gochat.recall"}`, errcode.BadField, "s6", ""},
		{`{"type":"send","cmid":"s6","group":["team"],"body":"x"}`, errcode.BadField, "s6", ""},
		// cmids GoChat keeps for its own messages
		{`{"type":"send","cmid":"gochat.recall:1","to":"bob","body":"x"}`, errcode.BadField, "gochat.recall:1", ""},
		{`{"type":"recall","cmid":"gochat.x","conv":"p:alice:bob","seq":1}`, errcode.BadField, "gochat.x", ""},
		// delivered, read
		{`{"type":"delivered","conv":"nope","seq":1}`, errcode.BadField, "", ""},
		{`{"type":"delivered","seq":1}`, errcode.BadField, "", ""},
		{`{"type":"read","conv":"p:alice:bob","seq":-1}`, errcode.BadField, "", ""},
		{`{"type":"read","conv":"p:alice:bob","seq":"7"}`, errcode.BadField, "", ""},
		{`{"type":"read","conv":"p:bob:alice","seq":1}`, errcode.BadField, "", ""},
		// typing
		{`{"type":"typing"}`, errcode.BadField, "", ""},
		{`{"type":"typing","to":"alice"}`, errcode.BadField, "", ""},
		{`{"type":"typing","to":"bad:user"}`, errcode.BadField, "", ""},
		// recall
		{`{"type":"recall","conv":"p:alice:bob","seq":1}`, errcode.BadField, "", ""},
		{`{"type":"recall","cmid":"` + long + `","conv":"p:alice:bob","seq":1}`, errcode.BadField, long[:64], ""},
		{`{"type":"recall","cmid":"r1","conv":"x:y","seq":1}`, errcode.BadField, "r1", ""},
		{`{"type":"recall","cmid":"r2","conv":"p:alice:bob","seq":0}`, errcode.BadField, "r2", ""},
		{`{"type":"recall","cmid":"r3","conv":"p:alice:bob"}`, errcode.BadField, "r3", ""},
		// group operations: only the rid is the gateway's to check
		{`{"type":"group_info","rid":"` + long + `","group":"team"}`, errcode.BadField, "", long[:64]},
		{`{"type":"group_members","rid":"g1","group":"team","limit":"all"}`, errcode.BadField, "", "g1"},
		// sync's "after" is an integer (group_members' is a string)
		{`{"type":"sync","rid":"y1","conv":"p:alice:bob","after":"bob"}`, errcode.BadField, "", "y1"},
		{`{"type":"sync","rid":"y2","conv":"p:alice:bob","after":1.5}`, errcode.BadField, "", "y2"},
		{`{"type":"sync","rid":"y3","conv":"p:alice:bob","after":-1}`, errcode.BadField, "", "y3"},
		{`{"type":"sync","after":"bob","rid":"y4","conv":"p:alice:bob"}`, errcode.BadField, "", "y4"},
	}
	for _, tc := range cases {
		c.send(tc.frame)
		var ef errFrame
		c.readJSON(&ef)
		if ef.Type != "error" || ef.Code != int32(tc.code) || ef.Reason != tc.code.String() || ef.CMID != tc.cmid || ef.RID != tc.rid {
			t.Fatalf("frame %.60q: got %+v, want code %d cmid %q rid %q", tc.frame, ef, tc.code, tc.cmid, tc.rid)
		}
	}
	if n := len(e.up.records()); n != 0 {
		t.Fatalf("%d records produced from bad frames", n)
	}
	if n := len(e.logic.clientCalls()); n != 0 {
		t.Fatalf("%d bad group frames passed to logic", n)
	}
	// Sync still takes a null or integer after.
	c.send(`{"type":"sync","rid":"y5","conv":"p:alice:bob","after":null}`)
	var sr protocol.SyncResp
	c.readJSON(&sr)
	c.send(`{"type":"sync","rid":"y6","conv":"p:alice:bob","after":9}`)
	c.readJSON(&sr)
	if sr.Type != "sync" || sr.RID != "y6" || sr.LastSeq != 10 {
		t.Fatalf("sync reply %+v", sr)
	}
}

func TestTypingThrottled(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	e := startDeps(t, nil, func(d *Deps) { d.Now = now.Load })
	c, _ := connect(t, e, "alice")
	for range 3 {
		c.send(`{"type":"typing","to":"bob"}`)
	}
	c.send(`{"type":"typing","to":"carol"}`) // the limit is per connection
	c.barrier()
	if n := len(e.up.records()); n != 1 {
		t.Fatalf("%d typing records in one second, want 1", n)
	}
	if got := testutil.ToFloat64(e.m.TypingDropped); got != 3 {
		t.Fatalf("typing dropped counted %v, want 3", got)
	}
	now.Add(int64(time.Second))
	c.send(`{"type":"typing","to":"carol"}`)
	c.barrier()
	recs := e.up.records()
	if len(recs) != 2 || recs[1].To != "carol" || recs[1].ConvId != "p:alice:carol" {
		t.Fatalf("after a second: records %+v", recs)
	}
	// Another connection has its own allowance.
	c2, _ := connectDevice(t, e, "alice", "web")
	c2.send(`{"type":"typing","to":"bob"}`)
	c2.barrier()
	if n := len(e.up.records()); n != 3 {
		t.Fatalf("second device: %d records, want 3", n)
	}
}

func TestProduceFailureAnswers(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	e.up.mu.Lock()
	e.up.fail = errors.New("kafka down")
	e.up.mu.Unlock()
	// A recall and a group send are answered like a send...
	c.send(`{"type":"recall","cmid":"r9","conv":"p:alice:bob","seq":3}`)
	c.send(`{"type":"send","cmid":"g9","group":"team","body":"x"}`)
	for _, cmid := range []string{"r9", "g9"} {
		var ef errFrame
		c.readJSON(&ef)
		if ef.Code != int32(errcode.Unavailable) || ef.CMID != cmid {
			t.Fatalf("got %+v, want unavailable for %s", ef, cmid)
		}
	}
	// ...cursors and typing are not answered at all.
	c.send(`{"type":"read","conv":"p:alice:bob","seq":3}`)
	c.send(`{"type":"delivered","conv":"p:alice:bob","seq":3}`)
	c.send(`{"type":"typing","to":"bob"}`)
	c.barrier()
	if got := testutil.ToFloat64(e.m.ProduceErrors); got != 5 {
		t.Fatalf("produce errors counted %v, want 5", got)
	}
}

var groupFrames = []string{
	`{"type":"group_create","rid":"1","name":"Team","members":["bob","carol"]}`,
	`{"type":"group_add","rid":"2","group":"team-42","members":["dave"]}`,
	`{"type":"group_remove", "rid":"3", "group":"team-42", "members":["dave"]}`,
	`{"type":"group_leave","rid":"4","group":"team-42"}`,
	`{"type":"group_dissolve","rid":"5","group":"team-42","extra":{"kept":[1,2]}}`,
	`{"type":"group_info","rid":"6","group":"team-42"}`,
	`{"type":"group_members","rid":"7","group":"team-42","after":"bob","limit":100}`,
	`{"group":"ignored","type":"groups"}`,
}

func TestGroupOpsPassThrough(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "alice")
	for i, f := range groupFrames {
		c.send(f)
		var in protocol.GroupReq
		if err := json.Unmarshal([]byte(f), &in); err != nil {
			t.Fatal(err)
		}
		var out protocol.GroupResp
		c.readJSON(&out)
		if out.Type != in.Type || out.RID != in.RID || out.Group == nil || out.Group.ID != in.Group || out.Group.Owner != "alice" {
			t.Fatalf("frame %d: reply %+v", i, out)
		}
	}
	calls := e.logic.clientCalls()
	if len(calls) != len(groupFrames) {
		t.Fatalf("%d calls, want %d", len(calls), len(groupFrames))
	}
	for i, call := range calls {
		if call.Uid != "alice" || call.Device != "phone" || call.GatewayId != "gwtest" || call.ConnId != h.ConnID {
			t.Fatalf("call %d from %s/%s/%s/%d", i, call.Uid, call.Device, call.GatewayId, call.ConnId)
		}
		if string(call.Frame) != groupFrames[i] {
			t.Fatalf("call %d frame %q, want the client's bytes %q", i, call.Frame, groupFrames[i])
		}
	}
	// The reply goes out byte for byte as logic wrote it.
	reply := `{"type":"groups",  "rid":"9","groups":[],"future":true}`
	e.logic.set(func(f *fakeLogic) { f.callReply = []byte(reply) })
	c.send(`{"type":"groups","rid":"9"}`)
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpText || string(f.Payload) != reply {
		t.Fatalf("reply %q %v, want %q", f.Payload, err, reply)
	}
}

func TestGroupOpErrors(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	cases := []struct {
		err   error
		reply string
		code  errcode.Code
		msg   string
	}{
		{errcode.Biz(errcode.ConvNotFound, "no group %q", "team"), "", errcode.ConvNotFound, `no group "team"`},
		{errcode.Biz(errcode.Unsupported, "groups are not supported"), "", errcode.Unsupported, "groups are not supported"},
		{errors.New("connection refused"), "", errcode.Unavailable, "service unavailable; retry"},
		{nil, "not json", errcode.Internal, "service unavailable; retry"},
		{nil, "", 0, ""}, // logic's default reply: no error
	}
	for i, tc := range cases {
		e.logic.set(func(f *fakeLogic) {
			f.callErr, f.callReply = tc.err, nil
			if tc.reply != "" {
				f.callReply = []byte(tc.reply)
			}
		})
		c.send(`{"type":"group_info","rid":"e` + string(rune('0'+i)) + `","group":"team"}`)
		var ef protocol.Error
		c.readJSON(&ef)
		if tc.code == 0 {
			if ef.Type != "group_info" {
				t.Fatalf("case %d: got %+v, want the group_info reply", i, ef)
			}
			continue
		}
		if ef.Type != "error" || ef.Code != int32(tc.code) || ef.Message != tc.msg || ef.RID != "e"+string(rune('0'+i)) {
			t.Fatalf("case %d: got %+v, want code %d %q", i, ef, tc.code, tc.msg)
		}
	}
	if got := testutil.ToFloat64(e.m.RPCErrors.WithLabelValues("client_call")); got != 2 {
		t.Fatalf("client_call errors counted %v, want 2 (the unavailable and the bad reply)", got)
	}
}

type pongFrame struct {
	Type   string `json:"type"`
	RID    string `json:"rid"`
	TS     int64  `json:"ts"`
	Cursor *int64 `json:"cursor"`
}

func (c *client) readPong(rid string) pongFrame {
	c.t.Helper()
	var p pongFrame
	c.readJSON(&p)
	if p.Type != "pong" || p.RID != rid || p.TS == 0 {
		c.t.Fatalf("got %+v, want pong %s", p, rid)
	}
	return p
}

func cursorOf(p pongFrame) int64 {
	if p.Cursor == nil {
		return -1
	}
	return *p.Cursor
}

// Pings wait for each other until the batch is full (the delay here is
// too long to matter) and share one Cursors call, each user asked once.
func TestPingCursorsBatched(t *testing.T) {
	e := start(t, func(c *Config) { c.CursorBatch = 3; c.CursorDelay = time.Hour })
	e.logic.set(func(f *fakeLogic) { f.cursors = map[string]int64{"alice": 7, "bob": 9} })
	a1, _ := connect(t, e, "alice")
	a2, _ := connectDevice(t, e, "alice", "web")
	b, _ := connect(t, e, "bob")
	a1.send(`{"type":"ping","rid":"p1"}`)
	a2.send(`{"type":"ping","rid":"p2"}`)
	a1.expectNothing(100 * time.Millisecond)
	if n := len(e.logic.cursorRequests()); n != 0 {
		t.Fatalf("%d Cursors calls before the batch was full", n)
	}
	b.send(`{"type":"ping","rid":"p3"}`)
	if c := cursorOf(a1.readPong("p1")); c != 7 {
		t.Fatalf("alice's phone got cursor %d, want 7", c)
	}
	if c := cursorOf(a2.readPong("p2")); c != 7 {
		t.Fatalf("alice's web got cursor %d, want 7", c)
	}
	if c := cursorOf(b.readPong("p3")); c != 9 {
		t.Fatalf("bob got cursor %d, want 9", c)
	}
	reqs := e.logic.cursorRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d Cursors calls, want 1", len(reqs))
	}
	uids := slices.Clone(reqs[0].Uids)
	slices.Sort(uids)
	if !reflect.DeepEqual(uids, []string{"alice", "bob"}) {
		t.Fatalf("Cursors asked for %v, want alice and bob once each", reqs[0].Uids)
	}
}

// A lone ping goes out after the delay; a user logic does not know, or a
// failed call, gets a pong without a cursor; WebSocket pings stay local.
func TestPingCursors(t *testing.T) {
	e := start(t, nil) // default delay (a few ms) and batch
	e.logic.set(func(f *fakeLogic) { f.cursors = map[string]int64{"alice": 12} })
	c, _ := connect(t, e, "alice")
	c.writeFrame(ws.NewPingFrame([]byte("hb")))
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "hb" {
		t.Fatalf("got %+v %v, want a pong control frame", f.Header, err)
	}
	c.send(`{"type":"ping","rid":"p1"}`)
	if got := cursorOf(c.readPong("p1")); got != 12 {
		t.Fatalf("cursor %d, want 12", got)
	}
	if n := len(e.logic.cursorRequests()); n != 1 {
		t.Fatalf("%d Cursors calls, want 1 (control pings make none)", n)
	}
	b, _ := connect(t, e, "bob")
	b.send(`{"type":"ping"}`)
	if got := cursorOf(b.readPong("")); got != -1 {
		t.Fatalf("unknown user: cursor %d, want none", got)
	}
	e.logic.set(func(f *fakeLogic) { f.cursorErr = errcode.Biz(errcode.Unsupported, "no cursors here") })
	c.send(`{"type":"ping","rid":"p2"}`)
	if got := cursorOf(c.readPong("p2")); got != -1 {
		t.Fatalf("failed call: cursor %d, want none", got)
	}
	e.logic.set(func(f *fakeLogic) { f.cursorErr = errors.New("logic down") })
	c.send(`{"type":"ping","rid":"p3"}`)
	if got := cursorOf(c.readPong("p3")); got != -1 {
		t.Fatalf("failed call: cursor %d, want none", got)
	}
	if got := testutil.ToFloat64(e.m.RPCErrors.WithLabelValues("cursors")); got != 2 {
		t.Fatalf("cursors errors counted %v, want 2", got)
	}
	c.send(`{"type":"ping","rid":"` + strings.Repeat("r", 65) + `"}`)
	var ef errFrame
	c.readJSON(&ef)
	if ef.Code != int32(errcode.BadField) {
		t.Fatalf("long rid: got %+v", ef)
	}
}

// A slow Cursors call holds only its pongs: the connection is served
// meanwhile (the call runs on the worker pool, not netpoll's goroutine).
func TestSlowCursorsDoNotBlockConnection(t *testing.T) {
	e := start(t, nil)
	gate := make(chan struct{})
	e.logic.set(func(f *fakeLogic) { f.cursorGate, f.cursors = gate, map[string]int64{"alice": 5} })
	c, _ := connect(t, e, "alice")
	c.send(`{"type":"ping","rid":"p1"}`)
	eventually(t, "cursors call", func() bool { return len(e.logic.cursorRequests()) == 1 })
	c.barrier()
	c.send(`{"type":"typing","to":"bob"}`)
	eventually(t, "typing record", func() bool { return len(e.up.records()) == 1 })
	close(gate)
	if got := cursorOf(c.readPong("p1")); got != 5 {
		t.Fatalf("cursor %d, want 5", got)
	}
}

func TestMessageAndConversationFields(t *testing.T) {
	m := message(&common.Message{ConvId: "p:a:b", Seq: 4, Sender: "a", Recipient: "b", ClientMsgId: "c",
		ContentType: "text", CreatedAtMs: 9, Recalled: true, RefSeq: 2})
	wantM := protocol.Message{Conv: "p:a:b", Seq: 4, From: "a", To: "b", ClientMsgID: "c", ContentType: "text",
		TS: 9, Recalled: true, RefSeq: 2}
	if m != wantM {
		t.Fatalf("message %+v\nwant    %+v", m, wantM)
	}
	c := conversation(&common.Conversation{ConvId: "g:team", Kind: "group", Name: "Team", LastSeq: 42,
		UpdatedAtMs: 7, ReadSeq: 40, DeliveredSeq: 41, Unread: 2})
	wantC := protocol.Conversation{Conv: "g:team", Kind: "group", Name: "Team", LastSeq: 42, UpdatedAt: 7,
		ReadSeq: 40, DeliveredSeq: 41, Unread: 2}
	if c != wantC {
		t.Fatalf("conversation %+v\nwant         %+v", c, wantC)
	}
}
