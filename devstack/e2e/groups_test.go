package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// groupOp sends a group operation and returns its reply (or fails on an
// error frame unless wantErr is set, in which case the error code).
func groupOp(t *testing.T, c *wsClient, req protocol.GroupReq) (protocol.GroupResp, int32) {
	t.Helper()
	c.sendJSON(req)
	f := c.waitFor(wait, req.Type+" reply", func(f frame) bool {
		return (f.Type == req.Type || f.Type == protocol.TypeError) && strings.Contains(string(f.Raw), `"rid":"`+req.RID+`"`)
	})
	if f.Type == protocol.TypeError {
		var e protocol.Error
		f.decode(t, &e)
		return protocol.GroupResp{}, e.Code
	}
	var r protocol.GroupResp
	f.decode(t, &r)
	return r, 0
}

func sendGroup(c *wsClient, cmid, group, body string) {
	c.sendJSON(protocol.Send{Type: protocol.TypeSend, ClientMsgID: cmid, Group: group, Body: body})
}

// TestGroupChat: groups created and changed by clients and app backends;
// only members send, receive and sync; messages are numbered per group.
func TestGroupChat(t *testing.T) {
	e := startStack(t, stack.Config{Gateways: 2})
	alice := connect(t, "alice", e.url(0, e.token("alice", "web")))
	bob := connect(t, "bob", e.url(1, e.token("bob", "web")))
	carol := connect(t, "carol", e.url(1, e.token("carol", "web")))
	dave := connect(t, "dave", e.url(0, e.token("dave", "web")))
	for _, c := range []*wsClient{alice, bob, carol, dave} {
		c.waitType(wait, protocol.TypeHello)
	}

	g, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupCreate, RID: "c", Group: "team", Name: "The Team", Members: []string{"bob", "carol"}})
	if code != 0 || g.Group.ID != "team" || g.Group.Owner != "alice" || g.Group.MemberCount != 3 {
		t.Fatalf("create: %+v code %d", g, code)
	}
	sendGroup(alice, "g1", "team", "hello team")
	if a := waitAck(t, alice, "g1"); a.Conv != "g:team" || a.Seq != 1 {
		t.Fatalf("ack = %+v", a)
	}
	for _, c := range []*wsClient{bob, carol} {
		if m := waitMsg(t, c); m.Conv != "g:team" || m.Seq != 1 || m.From != "alice" || m.Body != "hello team" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	// Outsiders can neither write, read nor look.
	sendGroup(dave, "d1", "team", "let me in")
	if e := waitError(t, dave); e.Code != int32(errcode.Forbidden) || e.ClientMsgID != "d1" {
		t.Fatalf("outsider send: %+v", e)
	}
	dave.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s", Conv: "g:team"})
	if e := waitError(t, dave); e.Code != int32(errcode.ConvNotFound) {
		t.Fatalf("outsider sync: %+v", e)
	}
	if _, code := groupOp(t, dave, protocol.GroupReq{Type: protocol.TypeGroupInfo, RID: "i", Group: "team"}); code != int32(errcode.ConvNotFound) {
		t.Fatalf("outsider info: code %d", code)
	}
	// A missing or malformed group id is a bad field, whoever asks.
	if _, code := groupOp(t, dave, protocol.GroupReq{Type: protocol.TypeGroupInfo, RID: "i2"}); code != int32(errcode.BadField) {
		t.Fatalf("info without a group: code %d, want bad_field", code)
	}
	if _, code := groupOp(t, dave, protocol.GroupReq{Type: protocol.TypeGroupMembers, RID: "i3", Group: "bad id!"}); code != int32(errcode.BadField) {
		t.Fatalf("members of a malformed group id: code %d, want bad_field", code)
	}
	if len(dave.pending(protocol.TypeMsg)) != 0 {
		t.Fatal("dave got a group message")
	}

	// A member adds dave; the owner removes carol.
	if r, code := groupOp(t, bob, protocol.GroupReq{Type: protocol.TypeGroupAdd, RID: "a", Group: "team", Members: []string{"dave"}}); code != 0 || r.Changed != 1 {
		t.Fatalf("add: %+v code %d", r, code)
	}
	if _, code := groupOp(t, bob, protocol.GroupReq{Type: protocol.TypeGroupRemove, RID: "r1", Group: "team", Members: []string{"carol"}}); code != int32(errcode.Forbidden) {
		t.Fatalf("a member removed someone: code %d", code)
	}
	if r, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupRemove, RID: "r2", Group: "team", Members: []string{"carol"}}); code != 0 || r.Changed != 1 {
		t.Fatalf("remove: %+v code %d", r, code)
	}
	sendGroup(bob, "b1", "team", "welcome dave")
	if a := waitAck(t, bob, "b1"); a.Seq != 2 {
		t.Fatalf("ack = %+v", a)
	}
	for _, c := range []*wsClient{alice, dave} {
		if m := waitMsg(t, c); m.Seq != 2 || m.From != "bob" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if extra := carol.pending(protocol.TypeMsg); len(extra) != 0 {
		t.Fatalf("removed member still gets messages: %v", extra)
	}
	// A removed member's read marks do not move its cursor (it would
	// count when added back). The send after it, of the same conversation
	// and so the same partition, is processed after it.
	carol.sendJSON(protocol.Cursor{Type: protocol.TypeRead, Conv: "g:team", Seq: 2})
	sendGroup(carol, "c1", "team", "wait")
	if e := waitError(t, carol); e.Code != int32(errcode.Forbidden) {
		t.Fatalf("removed member sends: %+v", e)
	}

	// Members read the history; the list shows the group with its name.
	dave.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s2", Conv: "g:team"})
	var s protocol.SyncResp
	dave.waitType(wait, protocol.TypeSync).decode(t, &s)
	if len(s.Messages) != 2 || s.Messages[0].Body != "hello team" || s.LastSeq != 2 {
		t.Fatalf("member sync: %+v", s)
	}
	bob.sendJSON(protocol.ConversationsReq{Type: protocol.TypeConversations, RID: "l"})
	var cs protocol.ConversationsResp
	bob.waitType(wait, protocol.TypeConversations).decode(t, &cs)
	if len(cs.Items) != 1 || cs.Items[0].Conv != "g:team" || cs.Items[0].Kind != "group" || cs.Items[0].Name != "The Team" || cs.Items[0].LastSeq != 2 {
		t.Fatalf("conversations: %+v", cs)
	}
	if r, code := groupOp(t, dave, protocol.GroupReq{Type: protocol.TypeGroupMembers, RID: "m", Group: "team"}); code != 0 || len(r.Members) != 3 {
		t.Fatalf("members: %+v code %d", r, code)
	}
	if r, code := groupOp(t, carol, protocol.GroupReq{Type: protocol.TypeGroups, RID: "gs"}); code != 0 || len(r.Groups) != 0 {
		t.Fatalf("carol's groups: %+v code %d", r, code)
	}
	// Added back, carol has both messages unread: the read she sent while
	// out did not count.
	if r, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupAdd, RID: "a2", Group: "team", Members: []string{"carol"}}); code != 0 || r.Changed != 1 {
		t.Fatalf("add carol back: %+v code %d", r, code)
	}
	carol.sendJSON(protocol.ConversationsReq{Type: protocol.TypeConversations, RID: "l2"})
	carol.waitType(wait, protocol.TypeConversations).decode(t, &cs)
	if len(cs.Items) != 1 || cs.Items[0].Conv != "g:team" || cs.Items[0].LastSeq != 2 || cs.Items[0].ReadSeq != 0 || cs.Items[0].Unread != 2 {
		t.Fatalf("carol's conversations after rejoining: %+v", cs)
	}

	// App backends: create a group and post a system message into it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := e.st.State().AdminSecret
	members := []string{"bob", "dave"}
	if _, err := e.logic.CreateGroup(ctx, &logic.CreateGroupReq{AdminSecret: admin, GroupId: "news", Name: "News", Owner: "alice", Members: members}); err != nil {
		t.Fatal(err)
	}
	r, err := e.logic.Send(ctx, &logic.SendReq{AdminSecret: admin, From: "alice", GroupId: "news", ClientMsgId: "n1", Body: "the news"})
	if err != nil || r.ConvId != "g:news" || r.Seq != 1 {
		t.Fatalf("server-side send: %+v %v", r, err)
	}
	for _, c := range []*wsClient{bob, dave} {
		if m := waitMsg(t, c); m.Conv != "g:news" || m.Seq != 1 {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
	if m := waitMsg(t, alice); m.Conv != "g:news" {
		t.Fatalf("alice's device did not get her server-side send: %+v", m)
	}

	// Dissolved: no more messages, history stays.
	if r, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupDissolve, RID: "x", Group: "team"}); code != 0 || !r.Group.Dissolved {
		t.Fatalf("dissolve: %+v code %d", r, code)
	}
	sendGroup(bob, "b2", "team", "anyone?")
	if e := waitError(t, bob); e.Code != int32(errcode.ConvNotFound) {
		t.Fatalf("send to a dissolved group: %+v", e)
	}
	bob.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s3", Conv: "g:team"})
	bob.waitType(wait, protocol.TypeSync).decode(t, &s)
	if len(s.Messages) != 2 {
		t.Fatalf("history of a dissolved group: %+v", s)
	}
	// The history stays readable, so the operator can still take a
	// message down there: the members online get the recall event (found
	// member by member, a dissolved group having no route set), the
	// heartbeat cursor counts it, and sync shows the message recalled.
	ping := func(rid string) int64 {
		bob.sendJSON(protocol.Ping{Type: protocol.TypePing, RID: rid})
		var p protocol.Pong
		bob.waitType(wait, protocol.TypePong).decode(t, &p)
		return p.Cursor
	}
	before := ping("hb1")
	rr, err := e.logic.Recall(ctx, &logic.RecallReq{AdminSecret: admin, ConvId: "g:team", Seq: 1, Reason: "removed by moderation"})
	if err != nil || rr.Seq != 3 {
		t.Fatalf("operator recall in a dissolved group: %+v %v", rr, err)
	}
	for _, c := range []*wsClient{bob, dave} {
		if m := waitMsg(t, c); m.Conv != "g:team" || m.Seq != 3 || m.ContentType != protocol.ContentTypeRecall || m.RefSeq != 1 || m.Body != "removed by moderation" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
	if after := ping("hb2"); after != before+1 {
		t.Fatalf("heartbeat cursor %d after the recall, want %d", after, before+1)
	}
	bob.sendJSON(protocol.SyncReq{Type: protocol.TypeSync, RID: "s4", Conv: "g:team"})
	bob.waitType(wait, protocol.TypeSync).decode(t, &s)
	if len(s.Messages) != 3 || !s.Messages[0].Recalled || s.Messages[0].Body != "" ||
		s.Messages[2].ContentType != protocol.ContentTypeRecall || s.Messages[2].RefSeq != 1 || s.Messages[2].Body != "removed by moderation" {
		t.Fatalf("history after the recall: %+v", s)
	}
}
