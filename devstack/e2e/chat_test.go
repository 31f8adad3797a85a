package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

const wait = 15 * time.Second

func send(c *wsClient, cmid, to, body string) {
	c.sendJSON(protocol.Send{Type: protocol.TypeSend, ClientMsgID: cmid, To: to, Body: body})
}

func waitAck(t *testing.T, c *wsClient, cmid string) protocol.Ack {
	t.Helper()
	f := c.waitFor(wait, "ack "+cmid, func(f frame) bool {
		return f.Type == protocol.TypeAck && strings.Contains(string(f.Raw), `"cmid":"`+cmid+`"`)
	})
	var a protocol.Ack
	f.decode(t, &a)
	return a
}

func waitMsg(t *testing.T, c *wsClient) protocol.Message {
	t.Helper()
	var m protocol.Message
	c.waitType(wait, protocol.TypeMsg).decode(t, &m)
	return m
}

func waitError(t *testing.T, c *wsClient) protocol.Error {
	t.Helper()
	var e protocol.Error
	c.waitType(wait, protocol.TypeError).decode(t, &e)
	return e
}

// syncRPC reads a conversation through logic's Sync, as app backends do.
func (e *env) syncRPC(uid, conv string, after int64) *logic.SyncResp {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.logic.Sync(ctx, &logic.SyncReq{Uid: uid, ConvId: conv, AfterSeq: after, Limit: 100})
	if err != nil {
		e.t.Fatalf("Sync: %v", err)
	}
	return resp
}

// TestOneToOneChat walks the whole path: client -> gateway -> Kafka up ->
// logic -> dataproxy -> SQL store, and back through Kafka down -> gateway
// -> client, then offline delivery and a full restart.
func TestOneToOneChat(t *testing.T) {
	hook := newWebhook(t)
	dataDir := t.TempDir()
	e := startStack(t, stack.Config{DataDir: dataDir, WebhookURL: hook.srv.URL})
	conv := ids.P2P("alice", "bob")

	alice := connect(t, "alice", e.url(0, e.token("alice", "phone")))
	bob := connect(t, "bob", e.url(0, e.token("bob", "phone")))
	alice.waitType(wait, protocol.TypeHello)
	bob.waitType(wait, protocol.TypeHello)

	t.Run("three messages in order, acked after persistence", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			send(alice, fmt.Sprintf("m%d", i), "bob", fmt.Sprintf("hello %d", i))
		}
		for i := 1; i <= 3; i++ {
			ack := waitAck(t, alice, fmt.Sprintf("m%d", i))
			if ack.Conv != conv || ack.Seq != int64(i) || ack.Duplicate {
				t.Fatalf("ack %d = %+v", i, ack)
			}
			// When the ack is out, the message is in the store.
			got := e.syncRPC("alice", conv, int64(i-1))
			if len(got.Messages) == 0 || got.Messages[0].Seq != int64(i) || got.Messages[0].ClientMsgId != ack.ClientMsgID {
				t.Fatalf("acked seq %d not readable from the store: %+v", i, got.Messages)
			}
		}
		for i := 1; i <= 3; i++ {
			m := waitMsg(t, bob)
			if m.Seq != int64(i) || m.From != "alice" || m.Conv != conv || m.Body != fmt.Sprintf("hello %d", i) {
				t.Fatalf("bob got %+v, want seq %d", m, i)
			}
		}
	})

	t.Run("resent client message id gets the original ack and no second message", func(t *testing.T) {
		send(alice, "m2", "bob", "hello 2, edited")
		ack := waitAck(t, alice, "m2")
		if ack.Seq != 2 || !ack.Duplicate {
			t.Fatalf("retransmit ack = %+v, want seq 2 duplicate", ack)
		}
		// The stored message 2 is pushed again (for all logic knows the
		// first push never left; devices drop repeats by conv and seq),
		// as stored: the retransmitted body is not used.
		if m := waitMsg(t, bob); m.Seq != 2 || m.Body != "hello 2" {
			t.Fatalf("bob got %+v after the retransmit, want seq 2 as stored", m)
		}
		// The next message is numbered 4: the retransmit made no new one.
		send(alice, "m4", "bob", "hello 4")
		if a := waitAck(t, alice, "m4"); a.Seq != 4 {
			t.Fatalf("ack m4 = %+v", a)
		}
		if m := waitMsg(t, bob); m.Seq != 4 {
			t.Fatalf("bob got seq %d after the retransmit, want 4", m.Seq)
		}
		if extra := bob.pending(protocol.TypeMsg); len(extra) != 0 {
			t.Fatalf("bob got extra messages: %v", extra)
		}
	})

	t.Run("sync over the websocket", func(t *testing.T) {
		bob.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s1", Conv: conv, After: 1, Limit: 2})
		var r protocol.SyncResp
		bob.waitType(wait, protocol.TypeSync).decode(t, &r)
		if r.RID != "s1" || len(r.Messages) != 2 || r.Messages[0].Seq != 2 || r.Messages[1].Seq != 3 || !r.HasMore || r.LastSeq != 4 {
			t.Fatalf("sync = %+v", r)
		}
		bob.sendJSON(protocol.ConversationsReq{Type: protocol.TypeConversations, RID: "c1"})
		var cs protocol.ConversationsResp
		bob.waitType(wait, protocol.TypeConversations).decode(t, &cs)
		if len(cs.Items) != 1 || cs.Items[0].Conv != conv || cs.Items[0].Peer != "alice" || cs.Items[0].LastSeq != 4 {
			t.Fatalf("conversations = %+v", cs)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		alice.sendRaw(ws.OpText, []byte(`{"type":"send",`))
		if e := waitError(t, alice); e.Code != int32(errcode.BadJSON) {
			t.Fatalf("malformed JSON: %+v", e)
		}
		send(alice, "nobody-1", "nobody", "anyone there?")
		if e := waitError(t, alice); e.Code != int32(errcode.UserNotFound) || e.ClientMsgID != "nobody-1" {
			t.Fatalf("send to unknown user: %+v", e)
		}
		// Still usable after both errors.
		send(alice, "m5", "bob", "still here")
		if a := waitAck(t, alice, "m5"); a.Seq != 5 {
			t.Fatalf("ack m5 = %+v", a)
		}
		if m := waitMsg(t, bob); m.Seq != 5 {
			t.Fatalf("bob got %+v", m)
		}
	})

	t.Run("offline recipient: webhook, then sync after reconnect", func(t *testing.T) {
		bob.close()
		// Wait until the gateway has unregistered bob, so the next sends
		// find him offline.
		deadline := time.Now().Add(wait)
		for e.st.RouteCount("bob") > 0 {
			if time.Now().After(deadline) {
				t.Fatal("bob's route was not removed after he disconnected")
			}
			time.Sleep(20 * time.Millisecond)
		}
		send(alice, "m6", "bob", "are you there?")
		send(alice, "m7", "bob", "call me")
		if a := waitAck(t, alice, "m7"); a.Seq != 7 {
			t.Fatalf("ack m7 = %+v", a)
		}
		call := hook.waitCall(t, wait, "offline push for seq 7", func(c map[string]any) bool {
			return c["uid"] == "bob" && c["seq"] == float64(7)
		})
		if call["conv"] != conv || call["from"] != "alice" || call["preview"] != "call me" {
			t.Fatalf("webhook call = %v", call)
		}
		bob = connect(t, "bob", e.url(0, e.token("bob", "phone")))
		bob.waitType(wait, protocol.TypeHello)
		bob.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s2", Conv: conv, After: 5})
		var r protocol.SyncResp
		bob.waitType(wait, protocol.TypeSync).decode(t, &r)
		if len(r.Messages) != 2 || r.Messages[0].Seq != 6 || r.Messages[1].Seq != 7 || r.Messages[1].Body != "call me" {
			t.Fatalf("sync after reconnect = %+v", r)
		}
	})

	t.Run("oversized frame closes with 1009", func(t *testing.T) {
		big := connect(t, "big", e.url(0, e.token("carol", "web")))
		big.waitType(wait, protocol.TypeHello)
		big.sendRaw(ws.OpText, []byte(`{"type":"send","cmid":"x","to":"bob","body":"`+strings.Repeat("a", 200_000)+`"}`))
		if code := big.waitClosed(wait); code != ws.StatusMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})

	t.Run("restart keeps every message", func(t *testing.T) {
		alice.close()
		bob.close()
		e.stop()
		e2 := startStack(t, stack.Config{DataDir: dataDir, WebhookURL: hook.srv.URL})
		got := e2.syncRPC("bob", conv, 0)
		if len(got.Messages) != 7 {
			t.Fatalf("after restart sync returned %d messages, want 7", len(got.Messages))
		}
		for i, m := range got.Messages {
			if m.Seq != int64(i+1) {
				t.Fatalf("message %d has seq %d", i, m.Seq)
			}
		}
		// The token issued before the restart still works (same secret),
		// and the conversation continues at seq 8.
		a := connect(t, "alice2", e2.url(0, e2.token("alice", "phone")))
		a.waitType(wait, protocol.TypeHello)
		send(a, "m8", "bob", "after restart")
		if ack := waitAck(t, a, "m8"); ack.Seq != 8 {
			t.Fatalf("ack after restart = %+v", ack)
		}
	})
}

// TestHandshakeRejections checks tokens are verified before any upgrade.
func TestHandshakeRejections(t *testing.T) {
	e := startStack(t, stack.Config{})
	secret := []byte(e.st.State().TokenSecret)
	expired, err := auth.Sign(secret, auth.Claims{UID: "alice", Device: "web", Expires: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := auth.Sign([]byte("not the secret"), auth.Claims{UID: "alice", Device: "web", Expires: time.Now().Add(time.Hour)})
	for name, tok := range map[string]string{"missing": "", "garbage": "abc", "expired": expired, "forged": forged} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, _, err := dial(ctx, e.url(0, tok))
		cancel()
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != 401 {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("%s token: err = %v, want HTTP 401", name, err)
		}
	}
}
