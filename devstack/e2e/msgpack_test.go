package e2e

import (
	"testing"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// TestMsgpackClients: clients that chose MessagePack (subprotocol
// gochat.msgpack) chat with JSON clients through the whole stack: sends,
// acks, pushes to a user's devices of both kinds, frames logic encodes
// (read receipts, typing, group replies), sync, the conversation list,
// ping, bad MessagePack, and a text frame on a MessagePack connection.
func TestMsgpackClients(t *testing.T) {
	e := startStack(t, stack.Config{})
	conv := ids.P2P("alice", "bob")
	alice := connectMsgpack(t, "alice", e.url(0, e.token("alice", "phone")))
	bobPhone := connect(t, "bob/phone", e.url(0, e.token("bob", "phone")))
	bobWeb := connectMsgpack(t, "bob/web", e.url(0, e.token("bob", "web")))
	for _, c := range []*wsClient{alice, bobPhone, bobWeb} {
		c.waitType(wait, protocol.TypeHello)
	}

	send(alice, "m1", "bob", "héllo \"bob\"\n")
	if a := waitAck(t, alice, "m1"); a.Conv != conv || a.Seq != 1 {
		t.Fatalf("ack = %+v", a)
	}
	for _, c := range []*wsClient{bobPhone, bobWeb} {
		if m := waitMsg(t, c); m.Seq != 1 || m.From != "alice" || m.Body != "héllo \"bob\"\n" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
	send(bobWeb, "r1", "alice", "hi alice")
	if a := waitAck(t, bobWeb, "r1"); a.Seq != 2 {
		t.Fatalf("ack = %+v", a)
	}
	if m := waitMsg(t, alice); m.Seq != 2 || m.From != "bob" || m.Body != "hi alice" {
		t.Fatalf("alice got %+v", m)
	}
	// bob's other device gets a copy of his own send.
	if m := waitMsg(t, bobPhone); m.Seq != 2 || m.From != "bob" {
		t.Fatalf("bob/phone got %+v", m)
	}

	// A read receipt and a typing indicator: frames logic encodes as JSON,
	// which the gateway turns into MessagePack for alice.
	bobPhone.sendJSON(protocol.Cursor{Type: protocol.TypeRead, Conv: conv, Seq: 1})
	var r protocol.Cursor
	alice.waitType(wait, protocol.TypeRead).decode(t, &r)
	// bob's reply already moved his read cursor to 2: the receipt says so.
	if r.Conv != conv || r.UID != "bob" || r.Seq != 2 {
		t.Fatalf("alice got receipt %+v", r)
	}
	bobWeb.sendJSON(protocol.Typing{Type: protocol.TypeTyping, To: "alice"})
	var ty protocol.Typing
	alice.waitType(wait, protocol.TypeTyping).decode(t, &ty)
	if ty.From != "bob" || ty.Conv != conv {
		t.Fatalf("alice got typing %+v", ty)
	}

	alice.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s", Conv: conv, After: 0})
	var sr protocol.SyncResp
	alice.waitType(wait, protocol.TypeSync).decode(t, &sr)
	if len(sr.Messages) != 2 || sr.Messages[0].Body != "héllo \"bob\"\n" || sr.Messages[1].Seq != 2 || sr.LastSeq != 2 {
		t.Fatalf("sync = %+v", sr)
	}
	bobWeb.sendJSON(protocol.ConversationsReq{Type: protocol.TypeConversations, RID: "c"})
	var cs protocol.ConversationsResp
	bobWeb.waitType(wait, protocol.TypeConversations).decode(t, &cs)
	if len(cs.Items) != 1 || cs.Items[0].Conv != conv || cs.Items[0].LastSeq != 2 || cs.Items[0].ReadSeq != 2 {
		t.Fatalf("bob's list = %+v", cs)
	}
	alice.sendJSON(protocol.Ping{Type: protocol.TypePing, RID: "p"})
	var pong protocol.Pong
	alice.waitType(wait, protocol.TypePong).decode(t, &pong)
	if pong.RID != "p" || pong.Cursor != 2 {
		t.Fatalf("pong = %+v", pong)
	}

	// Groups: the operation reaches logic as JSON, its reply comes back
	// as MessagePack; group messages reach both encodings.
	g, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupCreate, RID: "g", Group: "mp", Name: "MessagePack", Members: []string{"bob"}})
	if code != 0 || g.Group == nil || g.Group.ID != "mp" || g.Group.MemberCount != 2 {
		t.Fatalf("create: %+v code %d", g, code)
	}
	sendGroup(alice, "g1", "mp", "hello group")
	if a := waitAck(t, alice, "g1"); a.Conv != "g:mp" || a.Seq != 1 {
		t.Fatalf("group ack = %+v", a)
	}
	for _, c := range []*wsClient{bobPhone, bobWeb} {
		if m := waitMsg(t, c); m.Conv != "g:mp" || m.Body != "hello group" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	// Bad MessagePack is answered and the connection stays; a text frame
	// on a MessagePack connection closes it with 1003.
	bobWeb.sendRaw(ws.OpBinary, []byte{0x92, 0x01}) // an array cut short
	if er := waitError(t, bobWeb); er.Code != int32(errcode.BadMsgpack) || er.Reason != "bad_msgpack" {
		t.Fatalf("error = %+v", er)
	}
	send(bobWeb, "r2", "alice", "still here")
	if a := waitAck(t, bobWeb, "r2"); a.Seq != 3 {
		t.Fatalf("ack after the bad frame = %+v", a)
	}
	bobWeb.sendRaw(ws.OpText, []byte(`{"type":"ping"}`))
	if got := bobWeb.waitClosed(wait); got != ws.StatusUnsupportedData {
		t.Fatalf("text frame on a MessagePack connection: close %d, want 1003", got)
	}
}
