package server

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// dialProtocols dials asking for the given subprotocols and returns the
// client and the subprotocol the server chose.
func dialProtocols(t *testing.T, addr, tok string, protocols ...string) (*client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, hs, err := ws.Dialer{Protocols: protocols}.Dial(ctx, "ws://"+addr+"/ws?token="+tok)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &client{t: t, conn: conn, r: conn}
	if br != nil {
		// Frames that arrived with the 101 response sit in br.
		c.r = io.MultiReader(br, conn)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return c, hs.Protocol
}

// connectMsgpack dials with the MessagePack subprotocol and waits for hello.
func connectMsgpack(t *testing.T, e *env, uid string) (*client, hello) {
	t.Helper()
	c, proto := dialProtocols(t, e.addr, token(t, uid, "phone", time.Hour), protocol.SubprotocolMsgpack)
	if proto != protocol.SubprotocolMsgpack {
		t.Fatalf("server chose subprotocol %q", proto)
	}
	var h hello
	c.readMsgpack(&h)
	if h.Type != "hello" || h.UID != uid {
		t.Fatalf("first frame %+v, want hello for %s", h, uid)
	}
	return c, h
}

// sendMsgpack sends the MessagePack form of the JSON object js.
func (c *client) sendMsgpack(js string) {
	c.t.Helper()
	b, err := protocol.AppendMsgpack(nil, []byte(js))
	if err != nil {
		c.t.Fatalf("encode %s: %v", js, err)
	}
	c.sendBinary(b)
}

func (c *client) sendBinary(b []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientBinary(c.conn, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readMsgpack reads the next frame, which must be binary MessagePack, into v
// and returns its JSON form.
func (c *client) readMsgpack(v any) []byte {
	c.t.Helper()
	f, err := c.readFrame(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if f.Header.OpCode != ws.OpBinary {
		c.t.Fatalf("got opcode %d (payload %q), want binary", f.Header.OpCode, f.Payload)
	}
	js, err := protocol.AppendJSONFromMsgpack(nil, f.Payload)
	if err != nil {
		c.t.Fatalf("decode % x: %v", f.Payload, err)
	}
	if err := json.Unmarshal(js, v); err != nil {
		c.t.Fatalf("decode %s: %v", js, err)
	}
	return js
}

func TestSubprotocolNegotiation(t *testing.T) {
	e := start(t, nil)
	tok := token(t, "alice", "phone", time.Hour)
	for _, tc := range []struct {
		offer  []string
		chosen string
		binary bool
	}{
		{[]string{"x-other", protocol.SubprotocolMsgpack}, protocol.SubprotocolMsgpack, true},
		{[]string{protocol.SubprotocolJSON, protocol.SubprotocolMsgpack}, protocol.SubprotocolJSON, false},
		{[]string{"x-other"}, "", false}, // none spoken: no header, JSON
		{nil, "", false},
	} {
		c, chosen := dialProtocols(t, e.addr, tok, tc.offer...)
		if chosen != tc.chosen {
			t.Fatalf("offer %q: chosen %q, want %q", tc.offer, chosen, tc.chosen)
		}
		var h hello
		if tc.binary {
			c.readMsgpack(&h)
		} else {
			c.readJSON(&h)
		}
		if h.Type != "hello" || h.UID != "alice" {
			t.Fatalf("offer %q: hello %+v", tc.offer, h)
		}
		_ = c.conn.Close()
	}
}

// A MessagePack client sends, pings, syncs and makes a group operation:
// sends are produced upstream like JSON ones, replies and pushes come back
// as MessagePack, and the group operation reaches logic as JSON. (The
// other operations go the same way; e2e TestMsgpackClients covers them
// through the whole stack.)
func TestMsgpackClient(t *testing.T) {
	e := start(t, nil)
	bob, hb := connectMsgpack(t, e, "bob")
	alice, ha := connect(t, e, "alice") // JSON, for comparison

	bob.sendMsgpack(`{"type":"send","cmid":"m1","to":"alice","body":"héllo \"alice\"\n","content_type":"text/plain"}`)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	r := e.up.records()[0]
	want := events.UpRecord{Kind: events.UpKind_SEND, Sender: "bob", Device: "phone", GatewayId: "gwtest",
		ConnId: hb.ConnID, ClientMsgId: "m1", To: "alice", ConvId: "p:alice:bob", ContentType: "text/plain",
		Body: "héllo \"alice\"\n", ReceivedAtMs: r.ReceivedAtMs}
	if *r != want {
		t.Fatalf("record %+v\nwant   %+v", *r, want)
	}

	bob.sendMsgpack(`{"type":"ping","rid":"p1"}`)
	var pong protocol.Pong
	bob.readMsgpack(&pong)
	if pong.Type != "pong" || pong.RID != "p1" || pong.TS == 0 {
		t.Fatalf("pong %+v", pong)
	}

	// "after" as a float (4.0 is MessagePack float64, as libraries that
	// send every number as a double write it) is read as the integer 4.
	bob.sendMsgpack(`{"type":"sync","rid":"s1","conv":"p:alice:bob","after":4.0}`)
	var sr protocol.SyncResp
	bob.readMsgpack(&sr)
	if sr.Type != "sync" || sr.RID != "s1" || len(sr.Messages) != 1 || sr.Messages[0].Seq != 5 || sr.Messages[0].Body != "hi" {
		t.Fatalf("sync reply %+v", sr)
	}

	bob.sendMsgpack(`{"type":"group_info","rid":"g1","group":"team"}`)
	var gr protocol.GroupResp
	bob.readMsgpack(&gr)
	if gr.Type != "group_info" || gr.RID != "g1" || gr.Group == nil || gr.Group.ID != "team" || gr.Group.Owner != "bob" {
		t.Fatalf("group reply %+v", gr)
	}
	calls := e.logic.clientCalls()
	if len(calls) != 1 || !json.Valid(calls[0].Frame) {
		t.Fatalf("logic got %d calls, frame %q; want one JSON frame", len(calls), calls[0].Frame)
	}

	// One push to a JSON and a MessagePack connection: each gets its own
	// encoding of the same message.
	push := &events.DownRecord{
		Kind:    events.DownKind_PUSH,
		Targets: []*events.Target{{Uid: "alice", ConnId: ha.ConnID}, {Uid: "bob", ConnId: hb.ConnID}},
		Message: &common.Message{ConvId: "p:alice:bob", Seq: 7, Sender: "alice", Recipient: "bob", ClientMsgId: "m7", ContentType: "text", Body: "hi bob", CreatedAtMs: 99},
	}
	if n, err := e.srv.Fanout().Deliver(push); err != nil || n != 2 {
		t.Fatalf("delivered %d, %v; want 2", n, err)
	}
	var mj, mb protocol.Message
	alice.readJSON(&mj)
	bob.readMsgpack(&mb)
	if mj != mb || mb.Type != "msg" || mb.Seq != 7 || mb.Body != "hi bob" {
		t.Fatalf("push: JSON %+v, MessagePack %+v", mj, mb)
	}
	ack := &events.DownRecord{Kind: events.DownKind_ACK, Targets: []*events.Target{{Uid: "bob", ConnId: hb.ConnID}},
		Ack: &events.Ack{ClientMsgId: "m1", ConvId: "p:alice:bob", Seq: 8, CreatedAtMs: 100}}
	if n, _ := e.srv.Fanout().Deliver(ack); n != 1 {
		t.Fatalf("ack delivered %d", n)
	}
	var a protocol.Ack
	bob.readMsgpack(&a)
	if a.Type != "ack" || a.ClientMsgID != "m1" || a.Seq != 8 || a.TS != 100 {
		t.Fatalf("ack %+v", a)
	}
}

// Bad MessagePack gets an error frame (in MessagePack) and the connection
// stays usable; a text frame on a MessagePack connection closes it (1003).
func TestMsgpackBadFrames(t *testing.T) {
	e := start(t, nil)
	c, _ := connectMsgpack(t, e, "alice")
	mp := func(js string) []byte {
		b, err := protocol.AppendMsgpack(nil, []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := mp(`{"type":"send","cmid":"m1","to":"bob","body":"x"}`)
	cases := []struct {
		name  string
		frame []byte
		code  errcode.Code
		cmid  string
		msg   string // what the error's message must say
	}{
		{"never-used byte", []byte{0xc1}, errcode.BadMsgpack, "", "0xc1 at byte 0"},
		{"empty", []byte{}, errcode.BadMsgpack, "", "truncated value at byte 0"},
		{"truncated map", send[:len(send)-3], errcode.BadMsgpack, "", "truncated value at byte"},
		{"truncated array", []byte{0x91}, errcode.BadMsgpack, "", "truncated value at byte 0"},
		{"trailing bytes", append(append([]byte{}, send...), 0x01), errcode.BadMsgpack, "", "after the value, from byte " + strconv.Itoa(len(send))},
		{"array", mp(`[{"type":"ping"}]`), errcode.BadMsgpack, "", "not a MessagePack map"},
		{"string", mp(`"ping"`), errcode.BadMsgpack, "", "not a MessagePack map"},
		{"integer key", []byte{0x81, 0x01, 0xa4, 'p', 'i', 'n', 'g'}, errcode.BadMsgpack, "", "key at byte 1 is not a string"},
		{"invalid UTF-8", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xa2, 0xff, 0xfe}, errcode.BadMsgpack, "", "UTF-8"},
		{"extension", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xd4, 0x01, 0x00}, errcode.BadMsgpack, "", "extension types"},
		{"NaN", []byte{0x81, 0xa3, 's', 'e', 'q', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}, errcode.BadMsgpack, "", "no JSON form"},
		{"wrong field type", mp(`{"type":"send","cmid":7}`), errcode.BadField, "", "field cmid"},
		{"fraction for an integer", mp(`{"type":"recall","cmid":"r","conv":"p:alice:bob","seq":2.5}`), errcode.BadField, "r", "field seq"},
		{"unknown type", mp(`{"type":"teleport","cmid":"x"}`), errcode.UnknownType, "x", "teleport"},
	}
	for _, tc := range cases {
		c.sendBinary(tc.frame)
		var ef protocol.Error
		js := c.readMsgpack(&ef)
		if ef.Type != "error" || ef.Code != int32(tc.code) || ef.Reason != tc.code.String() || ef.ClientMsgID != tc.cmid || !strings.Contains(ef.Message, tc.msg) {
			t.Fatalf("%s: got %s, want code %d cmid %q and a message saying %q", tc.name, js, tc.code, tc.cmid, tc.msg)
		}
	}
	c.sendBinary(send)
	eventually(t, "up record", func() bool { return len(e.up.records()) == 1 })
	if r := e.up.records()[0]; r.ClientMsgId != "m1" || r.Body != "x" {
		t.Fatalf("record %+v", r)
	}
	c.send(`{"type":"ping"}`)
	c.expectClose(ws.StatusUnsupportedData)
}

// A MessagePack message may arrive in fragments like a JSON one.
func TestMsgpackFragmented(t *testing.T) {
	e := start(t, nil)
	c, _ := connectMsgpack(t, e, "alice")
	b, err := protocol.AppendMsgpack(nil, []byte(`{"type":"ping","rid":"frag"}`))
	if err != nil {
		t.Fatal(err)
	}
	c.writeFrame(ws.NewFrame(ws.OpBinary, false, b[:5]))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, true, b[5:]))
	var pong protocol.Pong
	c.readMsgpack(&pong)
	if pong.Type != "pong" || pong.RID != "frag" {
		t.Fatalf("pong %+v", pong)
	}
}
