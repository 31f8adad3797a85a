package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gochat-im/gochat/gateway/internal/downstream"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

const upgradeHeaders = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

func TestRejectedBeforeUpgrade(t *testing.T) {
	e := start(t, nil)
	cases := []struct {
		name   string
		target string
		status int
		body   string
	}{
		{"bad-token", "/ws?token=v1.bogus.token", 401, "bad token"},
		{"expired-token", "/ws?token=" + token(t, "alice", "phone", -time.Minute), 401, "token expired"},
		{"missing-token", "/ws", 401, "missing token"},
		{"wrong-path", "/chat?token=" + token(t, "alice", "phone", time.Hour), 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br, _ := rawRequest(t, e.addr, "GET "+tc.target+" HTTP/1.1\r\n"+upgradeHeaders)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" {
				t.Fatal("rejected request was upgraded")
			}
			// The server closes the connection after the response.
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection still open after rejection: %v", err)
			}
		})
	}
	if got := testutil.ToFloat64(e.m.Handshakes.WithLabelValues("unauthorized")); got != 3 {
		t.Fatalf("unauthorized handshakes counted %v, want 3", got)
	}
}

func TestBadHandshake(t *testing.T) {
	e := start(t, nil)
	tok := token(t, "alice", "phone", time.Hour)
	br, _ := rawRequest(t, e.addr, "GET /ws?token="+tok+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("resp %v err %v, want 426", resp, err)
	}
	// An oversized head gets 431.
	br, _ = rawRequest(t, e.addr, "GET /ws HTTP/1.1\r\nCookie: "+strings.Repeat("c", 9000)+"\r\n"+upgradeHeaders)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("resp %v err %v, want 431", resp, err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	e := start(t, func(c *Config) {
		c.HandshakeTimeout = 200 * time.Millisecond
		c.SweepInterval = 20 * time.Millisecond
	})
	br, conn := rawRequest(t, e.addr, "GET /ws HTTP/1.1\r\nHost: x\r\n") // never finished
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("slow handshake not dropped: %v", err)
	}
	eventually(t, "timeout counted", func() bool {
		return testutil.ToFloat64(e.m.Handshakes.WithLabelValues("timeout")) == 1
	})
}

func TestHelloAfterConnect(t *testing.T) {
	e := start(t, nil)
	gate := make(chan struct{})
	e.logic.mu.Lock()
	e.logic.gate = gate
	e.logic.mu.Unlock()
	c := dial(t, e.addr, token(t, "alice", "phone", time.Hour))
	// No hello while logic has not accepted the route.
	c.expectNothing(200 * time.Millisecond)
	close(gate)
	var h hello
	c.readJSON(&h)
	if h.Type != "hello" || h.UID != "alice" || h.Device != "phone" || h.HeartbeatMS != 30000 || h.MaxBody != 4096 || h.ConnID == 0 {
		t.Fatalf("hello %+v", h)
	}
	if !e.logic.connected(h.ConnID) {
		t.Fatal("hello arrived before Connect carried the connection")
	}
	e.logic.mu.Lock()
	req := e.logic.connects[0]
	e.logic.mu.Unlock()
	if req.GatewayId != "gwtest" || req.Conns[0].Uid != "alice" || req.Conns[0].Device != "phone" {
		t.Fatalf("connect request %+v", req)
	}
}

// A connection logic refuses in its Connect answer (the login policy chose
// a later one of the same call) gets the kick frame and close code, never a
// hello, and is disconnected once: an earlier attempt of its Connect call
// may have stored its route (an answer lost on the way).
func TestRefusedLoginClosedWithoutHello(t *testing.T) {
	e := start(t, nil)
	e.logic.set(func(f *fakeLogic) { f.refuse = "phone-a" })
	c := dial(t, e.addr, token(t, "alice", "phone-a", time.Hour))
	var k protocol.Kick
	c.readJSON(&k)
	if k != (protocol.Kick{Type: protocol.TypeKick, Reason: "replaced", Device: "phone-b"}) {
		t.Fatalf("first frame %+v, want the kick", k)
	}
	c.expectClose(ws.StatusCode(protocol.CloseReplaced))
	eventually(t, "closed and counted", func() bool {
		return len(e.srv.table.ByUID("alice", nil)) == 0 && testutil.ToFloat64(e.m.Refused) == 1
	})
	disconnected := func() []string {
		e.logic.mu.Lock()
		defer e.logic.mu.Unlock()
		var out []string
		for _, d := range e.logic.disconnects {
			for _, c := range d.Conns {
				out = append(out, c.Device)
			}
		}
		return out
	}
	eventually(t, "the refused connection's disconnect", func() bool { return len(disconnected()) == 1 })
	// An accepted connection opens as usual and is disconnected when it
	// closes; the refused one is not disconnected again.
	other, _ := connectDevice(t, e, "alice", "web")
	_ = other.conn.Close()
	eventually(t, "the other disconnect", func() bool { return len(disconnected()) == 2 })
	time.Sleep(100 * time.Millisecond)
	if d := disconnected(); len(d) != 2 || d[0] != "phone-a" || d[1] != "web" {
		t.Fatalf("disconnected devices %v, want phone-a then web", d)
	}
}

// A client may send before its hello arrives (while logic is accepting its
// route): the message is stored, so its ack (or error) must reach it, while
// pushes wait until the connection is open.
func TestRepliesReachAConnectionBeforeHello(t *testing.T) {
	e := start(t, nil)
	gate := make(chan struct{})
	e.logic.mu.Lock()
	e.logic.gate = gate
	e.logic.mu.Unlock()
	c := dial(t, e.addr, token(t, "alice", "phone", time.Hour))
	c.send(`{"type":"send","cmid":"m1","to":"bob","body":"hi"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	rec := e.up.records()[0]
	self := []*events.Target{{Uid: rec.Sender, ConnId: rec.ConnId}}
	push := &events.DownRecord{Kind: events.DownKind_PUSH, Targets: self,
		Message: &common.Message{ConvId: "p:alice:bob", Seq: 3, Sender: "bob", Recipient: "alice", ClientMsgId: "b3", Body: "early"}}
	if n, _ := e.srv.Fanout().Deliver(push); n != 0 {
		t.Fatalf("push delivered to %d connections before hello", n)
	}
	ack := &events.DownRecord{Kind: events.DownKind_ACK, Targets: self, Ack: &events.Ack{ClientMsgId: "m1", ConvId: rec.ConvId, Seq: 1}}
	if n, err := e.srv.Fanout().Deliver(ack); n != 1 || err != nil {
		t.Fatalf("ack delivered to %d connections (%v) before hello, want 1", n, err)
	}
	er := &events.DownRecord{Kind: events.DownKind_ERROR, Targets: self, Error: &events.ErrorEvent{Code: int32(errcode.UserNotFound), ClientMsgId: "m2"}}
	if n, _ := e.srv.Fanout().Deliver(er); n != 1 {
		t.Fatalf("error delivered to %d connections before hello, want 1", n)
	}
	var a protocol.Ack
	c.readJSON(&a)
	if a.Type != "ack" || a.ClientMsgID != "m1" || a.Seq != 1 {
		t.Fatalf("first frame %+v, want the ack", a)
	}
	var ef errFrame
	c.readJSON(&ef)
	if ef.Code != int32(errcode.UserNotFound) || ef.CMID != "m2" {
		t.Fatalf("second frame %+v, want the error", ef)
	}
	close(gate)
	var h hello
	c.readJSON(&h)
	if h.Type != "hello" || h.ConnID != rec.ConnId {
		t.Fatalf("hello %+v", h)
	}
	c.expectNothing(100 * time.Millisecond) // the early push stays dropped
}

func TestConnectRetried(t *testing.T) {
	e := start(t, nil)
	e.logic.mu.Lock()
	e.logic.connectErr = errors.New("logic down")
	e.logic.mu.Unlock()
	c := dial(t, e.addr, token(t, "alice", "phone", time.Hour))
	c.expectNothing(300 * time.Millisecond)
	e.logic.mu.Lock()
	e.logic.connectErr = nil
	e.logic.mu.Unlock()
	var h hello
	c.readJSON(&h)
	if h.Type != "hello" || !e.logic.connected(h.ConnID) {
		t.Fatalf("hello %+v after retry", h)
	}
}

func TestSendProducesUpRecord(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "bob")
	c.send(`{"type":"send","cmid":"m1","to":"alice","body":"hello alice"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	r := e.up.records()[0]
	want := events.UpRecord{Kind: events.UpKind_SEND, Sender: "bob", Device: "phone", GatewayId: "gwtest",
		ConnId: h.ConnID, ClientMsgId: "m1", To: "alice", ConvId: "p:alice:bob", ContentType: "text",
		Body: "hello alice", ReceivedAtMs: r.ReceivedAtMs}
	if *r != want {
		t.Fatalf("record %+v\nwant   %+v", *r, want)
	}
	if r.ReceivedAtMs < time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("received_at_ms %d", r.ReceivedAtMs)
	}
	// No ack from the gateway itself: logic acks after persisting.
	c.expectNothing(100 * time.Millisecond)
}

func TestBadFramesKeepConnectionUsable(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	cases := []struct {
		frame string
		code  errcode.Code
		cmid  string
		rid   string
	}{
		{`{"type":"send",`, errcode.BadJSON, "", ""},
		{`not json at all`, errcode.BadJSON, "", ""},
		{`[{"type":"ping"}]`, errcode.BadJSON, "", ""},
		{`"send"`, errcode.BadJSON, "", ""},
		{` 5`, errcode.BadJSON, "", ""},
		{`null`, errcode.BadJSON, "", ""},
		{`{"type":"send","cmid":7}`, errcode.BadField, "", ""},
		{`{"type":"teleport","rid":"r1"}`, errcode.UnknownType, "", "r1"},
		{`{"cmid":"x"}`, errcode.UnknownType, "x", ""},
		{`{"type":"send","cmid":"m2","to":"bob","body":"` + strings.Repeat("b", 4097) + `"}`, errcode.TooLarge, "m2", ""},
		{`{"type":"send","cmid":"m3","to":"bad:user","body":"x"}`, errcode.BadField, "m3", ""},
		{`{"type":"send","cmid":"m4","to":"alice","body":"x"}`, errcode.BadField, "m4", ""},
		{`{"type":"send","cmid":"","to":"bob","body":"x"}`, errcode.BadField, "", ""},
		{`{"type":"sync","rid":"r2","conv":"nope"}`, errcode.BadField, "", "r2"},
		{`{"type":"sync","rid":"r3","conv":"p:alice:bob","after":"x"}`, errcode.BadField, "", "r3"},
	}
	for _, tc := range cases {
		c.send(tc.frame)
		var ef errFrame
		c.readJSON(&ef)
		if ef.Type != "error" || ef.Code != int32(tc.code) || ef.Reason != tc.code.String() || ef.CMID != tc.cmid || ef.RID != tc.rid {
			t.Fatalf("frame %.40q: got %+v, want code %d cmid %q rid %q", tc.frame, ef, tc.code, tc.cmid, tc.rid)
		}
	}
	// The connection still works.
	c.send(`{"type":"send","cmid":"ok1","to":"bob","body":"still here","content_type":"text/plain"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	if r := e.up.records()[0]; r.ClientMsgId != "ok1" || r.ContentType != "text/plain" {
		t.Fatalf("record %+v", r)
	}
}

func TestProduceFailureTellsClient(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	e.up.mu.Lock()
	e.up.fail = errors.New("kafka down")
	e.up.mu.Unlock()
	c.send(`{"type":"send","cmid":"m9","to":"bob","body":"x"}`)
	var ef errFrame
	c.readJSON(&ef)
	if ef.Code != int32(errcode.Unavailable) || ef.CMID != "m9" {
		t.Fatalf("got %+v, want unavailable for m9", ef)
	}
}

func TestOversizedFrameCloses1009(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxFrame = 1024; c.MaxBody = 512 })
	c, _ := connect(t, e, "alice")
	c.writeFrame(ws.NewTextFrame(bytes.Repeat([]byte("x"), 1025)))
	c.expectClose(ws.StatusMessageTooBig)
}

func TestFragmentedMessage(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxFrame = 1024; c.MaxBody = 512 })
	c, _ := connect(t, e, "alice")
	msg := `{"type":"send","cmid":"frag","to":"bob","body":"in three parts"}`
	c.writeFrame(ws.NewFrame(ws.OpText, false, []byte(msg[:10])))
	c.writeFrame(ws.NewPingFrame([]byte("mid"))) // control frames may interleave
	c.writeFrame(ws.NewFrame(ws.OpContinuation, false, []byte(msg[10:30])))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, true, []byte(msg[30:])))
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
		t.Fatalf("pong %+v %v", f, err)
	}
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	// A reassembled message over the cap closes with 1009.
	c.writeFrame(ws.NewFrame(ws.OpText, false, bytes.Repeat([]byte("x"), 1000)))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, true, bytes.Repeat([]byte("x"), 100)))
	c.expectClose(ws.StatusMessageTooBig)
}

func TestProtocolErrorsClose1002(t *testing.T) {
	e := start(t, nil)
	cases := []struct {
		name  string
		write func(c *client)
		code  ws.StatusCode
	}{
		{"unmasked", func(c *client) { _ = ws.WriteFrame(c.conn, ws.NewTextFrame([]byte(`{}`))) }, ws.StatusProtocolError},
		{"stray-continuation", func(c *client) { c.writeFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x"))) }, ws.StatusProtocolError},
		{"binary", func(c *client) { c.writeFrame(ws.NewBinaryFrame([]byte{1})) }, ws.StatusUnsupportedData},
		{"bad-utf8", func(c *client) { c.writeFrame(ws.NewTextFrame([]byte{0xff, 0xfe})) }, ws.StatusInvalidFramePayloadData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := connect(t, e, "alice")
			tc.write(c)
			c.expectClose(tc.code)
		})
	}
}

func TestBodyOverMaxBody(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxBody = 10 })
	c, _ := connect(t, e, "alice")
	c.send(`{"type":"send","cmid":"big","to":"bob","body":"01234567890"}`)
	var ef errFrame
	c.readJSON(&ef)
	if ef.Code != int32(errcode.TooLarge) || ef.CMID != "big" {
		t.Fatalf("got %+v", ef)
	}
	c.send(`{"type":"send","cmid":"fits","to":"bob","body":"0123456789"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
}

func TestPingPong(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	c.writeFrame(ws.NewPingFrame([]byte("payload-123")))
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "payload-123" {
		t.Fatalf("got %+v %v, want pong with the same payload", f.Header, err)
	}
	// Application-level ping.
	c.send(`{"type":"ping","rid":"p1"}`)
	var pong struct {
		Type string `json:"type"`
		RID  string `json:"rid"`
		TS   int64  `json:"ts"`
	}
	c.readJSON(&pong)
	if pong.Type != "pong" || pong.RID != "p1" || pong.TS == 0 {
		t.Fatalf("pong %+v", pong)
	}
}

func TestCloseEchoesCode(t *testing.T) {
	e := start(t, nil)
	c, h := connect(t, e, "alice")
	c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
	c.expectClose(ws.StatusNormalClosure)
	eventually(t, "disconnect", func() bool { return e.logic.disconnected(h.ConnID) })
	eventually(t, "table empty", func() bool { return e.srv.Conns() == 0 })
}

func TestSyncAndConversations(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	c.send(`{"type":"sync","rid":"s1","conv":"p:alice:bob","after":4}`)
	var sr struct {
		Type     string `json:"type"`
		RID      string `json:"rid"`
		Conv     string `json:"conv"`
		LastSeq  int64  `json:"last_seq"`
		Messages []struct {
			Seq  int64  `json:"seq"`
			From string `json:"from"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	c.readJSON(&sr)
	if sr.Type != "sync" || sr.RID != "s1" || sr.Conv != "p:alice:bob" || sr.LastSeq != 5 || len(sr.Messages) != 1 || sr.Messages[0].Seq != 5 || sr.Messages[0].From != "bob" {
		t.Fatalf("sync reply %+v", sr)
	}
	e.logic.mu.Lock()
	got := e.logic.syncs[0]
	e.logic.mu.Unlock()
	if got.Uid != "alice" || got.Limit != 50 {
		t.Fatalf("sync request %+v: uid must be the session's, limit the default", got)
	}
	c.send(`{"type":"conversations","rid":"c1"}`)
	var cr struct {
		Type  string `json:"type"`
		RID   string `json:"rid"`
		Items []struct {
			Conv    string `json:"conv"`
			LastSeq int64  `json:"last_seq"`
		} `json:"items"`
	}
	c.readJSON(&cr)
	if cr.Type != "conversations" || cr.RID != "c1" || len(cr.Items) != 1 || cr.Items[0].LastSeq != 3 {
		t.Fatalf("conversations reply %+v", cr)
	}
}

func TestDownstreamReachesOnlyItsTarget(t *testing.T) {
	e := start(t, nil)
	alice, ha := connect(t, e, "alice")
	bob, hb := connect(t, e, "bob")
	push := &events.DownRecord{
		Kind: events.DownKind_PUSH,
		Targets: []*events.Target{
			{Uid: "bob", ConnId: hb.ConnID},
			{Uid: "alice", ConnId: hb.ConnID}, // bob's conn id with alice's uid: a stale route
			{Uid: "bob", ConnId: ha.ConnID},   // alice's conn id with bob's uid
			{Uid: "carol", ConnId: 42},        // nobody here
		},
		Message: &common.Message{ConvId: "p:alice:bob", Seq: 7, Sender: "alice", Recipient: "bob", ClientMsgId: "m7", ContentType: "text", Body: "hi bob", CreatedAtMs: 99},
	}
	n, err := e.srv.Fanout().Deliver(push)
	if err != nil || n != 1 {
		t.Fatalf("delivered %d, %v; want 1", n, err)
	}
	var msg struct {
		Type string `json:"type"`
		Conv string `json:"conv"`
		Seq  int64  `json:"seq"`
		From string `json:"from"`
		Body string `json:"body"`
		CMID string `json:"cmid"`
		TS   int64  `json:"ts"`
	}
	bob.readJSON(&msg)
	if msg.Type != "msg" || msg.Conv != "p:alice:bob" || msg.Seq != 7 || msg.From != "alice" || msg.Body != "hi bob" || msg.TS != 99 {
		t.Fatalf("push %+v", msg)
	}
	alice.expectNothing(200 * time.Millisecond)
	// An ack reaches its sender.
	ack := &events.DownRecord{Kind: events.DownKind_ACK, Targets: []*events.Target{{Uid: "alice", ConnId: ha.ConnID}},
		Ack: &events.Ack{ClientMsgId: "m7", ConvId: "p:alice:bob", Seq: 7, CreatedAtMs: 99}}
	if n, _ := e.srv.Fanout().Deliver(ack); n != 1 {
		t.Fatalf("ack delivered %d", n)
	}
	var a protocol.Ack
	alice.readJSON(&a)
	if a.Type != "ack" || a.ClientMsgID != "m7" || a.Seq != 7 {
		t.Fatalf("ack %+v", a)
	}
	// An error record becomes an error frame with the cmid.
	er := &events.DownRecord{Kind: events.DownKind_ERROR, Targets: []*events.Target{{Uid: "alice", ConnId: ha.ConnID}},
		Error: &events.ErrorEvent{Code: int32(errcode.UserNotFound), Message: "no such user", ClientMsgId: "m8"}}
	if n, _ := e.srv.Fanout().Deliver(er); n != 1 {
		t.Fatalf("error delivered %d", n)
	}
	var ef errFrame
	alice.readJSON(&ef)
	if ef.Code != int32(errcode.UserNotFound) || ef.Reason != "user_not_found" || ef.CMID != "m8" {
		t.Fatalf("error frame %+v", ef)
	}
}

// A limit beyond int32 reaches logic as the largest int32 (logic caps it),
// not wrapped around to a negative or a small number.
func TestConversationsLimitDoesNotWrap(t *testing.T) {
	e := start(t, nil)
	c, _ := connect(t, e, "alice")
	for _, l := range []string{"2147483648", "4294967297", "7"} {
		c.send(`{"type":"conversations","rid":"r","limit":` + l + `}`)
		var f struct{ Type string }
		c.readJSON(&f)
		if f.Type != "conversations" {
			t.Fatalf("limit %s: got a %q frame", l, f.Type)
		}
	}
	e.logic.mu.Lock()
	got := e.logic.convLimits
	e.logic.mu.Unlock()
	if len(got) != 3 || got[0] != math.MaxInt32 || got[1] != math.MaxInt32 || got[2] != 7 {
		t.Fatalf("limits sent to logic: %v", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := start(t, func(c *Config) {
		c.Heartbeat = 100 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
		c.SweepInterval = 20 * time.Millisecond
	})
	c, h := connect(t, e, "alice")
	if h.HeartbeatMS != 100 {
		t.Fatalf("heartbeat %d", h.HeartbeatMS)
	}
	// docs/PROTOCOL.md: an idle connection is closed with 1001.
	c.expectClose(ws.StatusGoingAway)
	eventually(t, "disconnect", func() bool { return e.logic.disconnected(h.ConnID) })
}

func TestSlowClientDisconnected(t *testing.T) {
	e := start(t, func(c *Config) { c.WriteQueue = downstream.MinWriteQueue; c.WriteTimeout = time.Second })
	_, h := connect(t, e, "alice") // never reads again
	rec := &events.DownRecord{Kind: events.DownKind_PUSH, Targets: []*events.Target{{Uid: "alice", ConnId: h.ConnID}},
		Message: &common.Message{ConvId: "p:alice:bob", Seq: 1, Sender: "bob", Body: strings.Repeat("z", 60000)}}
	eventually(t, "slow client dropped", func() bool {
		for i := 0; i < 50; i++ {
			_, _ = e.srv.Fanout().Deliver(rec)
		}
		return e.srv.Conns() == 0
	})
	if testutil.ToFloat64(e.m.SlowClients) == 0 {
		t.Fatal("slow client not counted")
	}
}

func TestGracefulShutdown(t *testing.T) {
	e := start(t, nil)
	a, ha := connect(t, e, "alice")
	b, hb := connect(t, e, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(ctx) }()
	a.expectClose(ws.StatusGoingAway)
	b.expectClose(ws.StatusGoingAway)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !e.logic.disconnected(ha.ConnID) || !e.logic.disconnected(hb.ConnID) {
		t.Fatal("Disconnect not sent for every connection")
	}
	// No new connections are accepted.
	if _, _, _, err := (ws.Dialer{Timeout: 2 * time.Second}).Dial(context.Background(), "ws://"+e.addr+"/ws?token="+token(t, "carol", "phone", time.Hour)); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}
