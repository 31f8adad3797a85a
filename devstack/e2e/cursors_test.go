package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// TestReceiptsTypingRecall: read cursors, unread counts and read
// receipts; typing indicators; recalls inside and outside the window.
func TestReceiptsTypingRecall(t *testing.T) {
	e := startStack(t, stack.Config{Extra: map[string][]string{"logic": {"-recall-window", "3s"}}})
	conv := ids.P2P("alice", "bob")
	alice := connect(t, "alice", e.url(0, e.token("alice", "phone")))
	bobPhone := connect(t, "bob/phone", e.url(0, e.token("bob", "phone")))
	bobWeb := connect(t, "bob/web", e.url(0, e.token("bob", "web")))
	for _, c := range []*wsClient{alice, bobPhone, bobWeb} {
		c.waitType(wait, protocol.TypeHello)
	}
	for i := 1; i <= 3; i++ {
		send(alice, "m"+strconv.Itoa(i), "bob", "message "+strconv.Itoa(i))
		waitAck(t, alice, "m"+strconv.Itoa(i))
	}
	for range 3 {
		waitMsg(t, bobPhone)
		waitMsg(t, bobWeb)
	}

	// bob reads up to 2 on his phone: alice and bob's web learn it.
	bobPhone.sendJSON(protocol.Cursor{Type: protocol.TypeRead, Conv: conv, Seq: 2})
	for _, c := range []*wsClient{alice, bobWeb} {
		var r protocol.Cursor
		c.waitType(wait, protocol.TypeRead).decode(t, &r)
		if r.Conv != conv || r.UID != "bob" || r.Seq != 2 {
			t.Fatalf("%s got receipt %+v", c.name, r)
		}
	}
	unread := func(c *wsClient) protocol.Conversation {
		c.sendJSON(protocol.ConversationsReq{Type: protocol.TypeConversations, RID: "u"})
		var cs protocol.ConversationsResp
		c.waitType(wait, protocol.TypeConversations).decode(t, &cs)
		if len(cs.Items) != 1 {
			t.Fatalf("%s conversations: %+v", c.name, cs)
		}
		return cs.Items[0]
	}
	if it := unread(bobWeb); it.ReadSeq != 2 || it.Unread != 1 || it.LastSeq != 3 {
		t.Fatalf("bob's list: %+v", it)
	}
	if it := unread(alice); it.ReadSeq != 3 || it.Unread != 0 {
		t.Fatalf("alice's list (her sends count as read): %+v", it)
	}
	// A lower cursor never moves it back.
	// Both go through the same partition in this order: once the delivered
	// cursor shows, the read one has been handled.
	bobWeb.sendJSON(protocol.Cursor{Type: protocol.TypeRead, Conv: conv, Seq: 1})
	bobWeb.sendJSON(protocol.Cursor{Type: protocol.TypeDelivered, Conv: conv, Seq: 3})
	deadline := time.Now().Add(wait)
	it := unread(bobWeb)
	for it.DeliveredSeq != 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		it = unread(bobWeb)
	}
	if it.ReadSeq != 2 || it.DeliveredSeq != 3 {
		t.Fatalf("after a lower read cursor: %+v", it)
	}

	// Typing goes to the other side only, and is not stored.
	bobPhone.sendJSON(protocol.Typing{Type: protocol.TypeTyping, To: "alice"})
	var ty protocol.Typing
	alice.waitType(wait, protocol.TypeTyping).decode(t, &ty)
	if ty.From != "bob" || ty.Conv != conv {
		t.Fatalf("typing = %+v", ty)
	}

	// Recall: only your own message, only within the window.
	alice.sendJSON(protocol.Recall{Type: protocol.TypeRecall, ClientMsgID: "r1", Conv: conv, Seq: 3})
	if a := waitAck(t, alice, "r1"); a.Seq != 4 {
		t.Fatalf("recall ack = %+v", a)
	}
	for _, c := range []*wsClient{bobPhone, bobWeb} {
		if m := waitMsg(t, c); m.Seq != 4 || m.ContentType != protocol.ContentTypeRecall || m.RefSeq != 3 {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
	bobPhone.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s", Conv: conv, After: 2})
	var s protocol.SyncResp
	bobPhone.waitType(wait, protocol.TypeSync).decode(t, &s)
	if len(s.Messages) != 2 || !s.Messages[0].Recalled || s.Messages[0].Body != "" || s.Messages[1].RefSeq != 3 {
		t.Fatalf("sync after the recall: %+v", s)
	}
	bobPhone.sendJSON(protocol.Recall{Type: protocol.TypeRecall, ClientMsgID: "r2", Conv: conv, Seq: 1})
	if e := waitError(t, bobPhone); e.Code != int32(errcode.Forbidden) || e.ClientMsgID != "r2" {
		t.Fatalf("recalling someone else's message: %+v", e)
	}
	// A recall under the cmid of a message is refused, not answered with
	// that message's ack (which would read as a recall done).
	alice.sendJSON(protocol.Recall{Type: protocol.TypeRecall, ClientMsgID: "m2", Conv: conv, Seq: 2})
	if e := waitError(t, alice); e.Code != int32(errcode.BadField) || e.ClientMsgID != "m2" {
		t.Fatalf("recall under a message's cmid: %+v", e)
	}
	time.Sleep(3 * time.Second) // the window is 3 s
	alice.sendJSON(protocol.Recall{Type: protocol.TypeRecall, ClientMsgID: "r3", Conv: conv, Seq: 2})
	if e := waitError(t, alice); e.Code != int32(errcode.Forbidden) || e.ClientMsgID != "r3" {
		t.Fatalf("recall after the window: %+v", e)
	}
}

// TestMissedPushFoundByHeartbeat: a downstream record dropped on purpose
// (the gateway runs with -drop-pushes 1, so the first message push it reads
// is discarded as if lost) is noticed at the next heartbeat: the pong's
// cursor exceeds the client's sum of highest seqs, and a sync brings the
// message (DESIGN.md section 3, point 5). Later pushes flow again.
func TestMissedPushFoundByHeartbeat(t *testing.T) {
	e := startStack(t, stack.Config{Extra: map[string][]string{"gateway": {"-drop-pushes", "1"}}})
	conv := ids.P2P("alice", "bob")
	alice := connect(t, "alice", e.url(0, e.token("alice", "phone")))
	bob := connect(t, "bob", e.url(0, e.token("bob", "phone")))
	alice.waitType(wait, protocol.TypeHello)
	bob.waitType(wait, protocol.TypeHello)

	ping := func() int64 {
		bob.sendJSON(protocol.Ping{Type: protocol.TypePing, RID: "hb"})
		var p protocol.Pong
		bob.waitType(wait, protocol.TypePong).decode(t, &p)
		return p.Cursor
	}
	if c := ping(); c != 0 {
		t.Fatalf("cursor %d before any message, want 0", c)
	}

	// m1's push is the one the gateway drops; alice's ack still comes.
	send(alice, "m1", "bob", "lost push")
	if a := waitAck(t, alice, "m1"); a.Seq != 1 {
		t.Fatalf("ack of m1: seq %d, want 1", a.Seq)
	}
	time.Sleep(300 * time.Millisecond)
	if extra := bob.pending(protocol.TypeMsg); len(extra) != 0 {
		t.Fatalf("the push was delivered after all: %v", extra)
	}
	var highest int64 // bob's client state: nothing received yet
	c := ping()
	if c <= highest {
		t.Fatalf("cursor %d does not show the missed message (client has %d)", c, highest)
	}
	bob.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s", Conv: conv, After: highest})
	var s protocol.SyncResp
	bob.waitType(wait, protocol.TypeSync).decode(t, &s)
	if len(s.Messages) != 1 || s.Messages[0].Body != "lost push" || s.Messages[0].Seq != 1 || c != 1 {
		t.Fatalf("sync after the heartbeat: %+v (cursor %d)", s, c)
	}
	highest = s.Messages[0].Seq

	// Only the first push was dropped: m2 arrives by push, and the cursor
	// then matches the client's state.
	send(alice, "m2", "bob", "pushed")
	waitAck(t, alice, "m2")
	if m := waitMsg(t, bob); m.Seq != 2 || m.Body != "pushed" {
		t.Fatalf("push after the drop: %+v", m)
	}
	highest = 2
	if c := ping(); c != highest {
		t.Fatalf("cursor %d with nothing missed, want %d", c, highest)
	}
}
