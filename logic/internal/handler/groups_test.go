package handler

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/pipeline"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

func call(t *testing.T, h *Handler, uid string, req protocol.GroupReq) (protocol.GroupResp, error) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := h.ClientCall(context.Background(), &logic.ClientCallReq{Uid: uid, Device: "d", Frame: b})
	var out protocol.GroupResp
	if err == nil {
		if err := json.Unmarshal(resp.Frame, &out); err != nil {
			t.Fatal(err)
		}
	}
	return out, err
}

func TestClientGroupOperations(t *testing.T) {
	dp := dpfake.New("alice", "bob", "carol", "dave")
	h := newHandler(dp)
	g, err := call(t, h, "alice", protocol.GroupReq{Type: protocol.TypeGroupCreate, RID: "1", Name: "team", Members: []string{"bob"}})
	if err != nil || g.Group == nil || g.Group.Owner != "alice" || g.Group.MemberCount != 2 || g.RID != "1" {
		t.Fatalf("create: %+v %v", g, err)
	}
	id := g.Group.ID
	if r, err := call(t, h, "bob", protocol.GroupReq{Type: protocol.TypeGroupAdd, Group: id, Members: []string{"carol"}}); err != nil || r.Changed != 1 {
		t.Fatalf("member adds: %+v %v", r, err)
	}
	if _, err := call(t, h, "dave", protocol.GroupReq{Type: protocol.TypeGroupInfo, Group: id}); code(err) != errcode.ConvNotFound {
		t.Fatalf("outsider sees the group: %v", err)
	}
	if _, err := call(t, h, "bob", protocol.GroupReq{Type: protocol.TypeGroupRemove, Group: id, Members: []string{"carol"}}); code(err) != errcode.Forbidden {
		t.Fatalf("non-owner removes: %v", err)
	}
	if r, err := call(t, h, "carol", protocol.GroupReq{Type: protocol.TypeGroupLeave, Group: id}); err != nil || r.Group.MemberCount != 2 {
		t.Fatalf("leave: %+v %v", r, err)
	}
	if r, err := call(t, h, "alice", protocol.GroupReq{Type: protocol.TypeGroupMembers, Group: id}); err != nil || len(r.Members) != 2 {
		t.Fatalf("members: %+v %v", r, err)
	}
	if r, err := call(t, h, "bob", protocol.GroupReq{Type: protocol.TypeGroups}); err != nil || len(r.Groups) != 1 || r.Groups[0].ID != id {
		t.Fatalf("groups: %+v %v", r, err)
	}
	if _, err := call(t, h, "bob", protocol.GroupReq{Type: protocol.TypeGroupDissolve, Group: id}); code(err) != errcode.Forbidden {
		t.Fatalf("non-owner dissolves: %v", err)
	}
	if r, err := call(t, h, "alice", protocol.GroupReq{Type: protocol.TypeGroupDissolve, Group: id}); err != nil || !r.Group.Dissolved {
		t.Fatalf("dissolve: %+v %v", r, err)
	}
	if _, err := call(t, h, "alice", protocol.GroupReq{Type: "group_explode"}); code(err) != errcode.UnknownType {
		t.Fatalf("unknown op: %v", err)
	}
	// A missing or malformed group id is a bad field, not an unknown group.
	for _, op := range []string{protocol.TypeGroupAdd, protocol.TypeGroupRemove, protocol.TypeGroupLeave,
		protocol.TypeGroupDissolve, protocol.TypeGroupInfo, protocol.TypeGroupMembers} {
		for _, bad := range []string{"", "bad id!"} {
			if _, err := call(t, h, "alice", protocol.GroupReq{Type: op, Group: bad, Members: []string{"bob"}}); code(err) != errcode.BadField {
				t.Fatalf("%s with group %q: %v, want bad_field", op, bad, err)
			}
		}
	}
	// Sync of a group: members only.
	if _, err := h.Sync(context.Background(), &logic.SyncReq{Uid: "dave", ConvId: "g:" + id}); code(err) != errcode.ConvNotFound {
		t.Fatalf("outsider syncs: %v", err)
	}
	if _, err := h.Sync(context.Background(), &logic.SyncReq{Uid: "bob", ConvId: "g:" + id}); err != nil {
		t.Fatalf("member sync: %v", err)
	}
}

// pipeProducer runs upstream records through a real Processor at once, as
// the upstream consumer would.
type pipeProducer struct {
	t    *testing.T
	proc *pipeline.Processor
	// before, when set, runs before each record is processed.
	before func()
}

func (p *pipeProducer) Produce(topic string, _, value []byte, cb kafkax.Callback) error {
	if p.before != nil {
		p.before()
	}
	if topic == kafkax.TopicUp {
		var r events.UpRecord
		if err := kafkax.Decode(value, &r); err != nil {
			p.t.Fatal(err)
		}
		if err := p.proc.Process(context.Background(), []*events.UpRecord{&r}); err != nil {
			p.t.Fatal(err)
		}
	}
	cb(nil)
	return nil
}

type sink struct{}

func (sink) SendAll(context.Context, []kafkax.Msg) error { return nil }

func TestServerSideSend(t *testing.T) {
	dp := dpfake.New("system", "bob")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	uc := users.New(dp, time.Minute, 10)
	router := routing.New(dp, live{})
	prod := &pipeProducer{t: t, proc: pipeline.NewProcessor(dp, uc, router, sink{}, pipeline.NewMetrics(nil), log)}
	h := New(Config{AdminSecret: "admin", TokenSecret: []byte("t")}, dp, uc, router, prod, log)
	ctx := context.Background()
	req := &logic.SendReq{AdminSecret: "admin", From: "system", To: "bob", ClientMsgId: "welcome-bob", Body: "welcome!"}
	r, err := h.Send(ctx, req)
	if err != nil || r.Seq != 1 || r.ConvId != "p:bob:system" || r.Duplicate {
		t.Fatalf("send: %+v %v", r, err)
	}
	r, err = h.Send(ctx, req)
	if err != nil || r.Seq != 1 || !r.Duplicate {
		t.Fatalf("retry: %+v %v", r, err)
	}
	if _, err := h.Send(ctx, &logic.SendReq{AdminSecret: "admin", From: "system", To: "ghost", ClientMsgId: "x", Body: "x"}); code(err) != errcode.UserNotFound {
		t.Fatalf("unknown recipient: %v", err)
	}
	if _, err := h.Send(ctx, &logic.SendReq{AdminSecret: "nope", From: "system", To: "bob", ClientMsgId: "x", Body: "x"}); code(err) != errcode.Unauthorized {
		t.Fatalf("bad secret: %v", err)
	}
	if _, err := h.Send(ctx, &logic.SendReq{AdminSecret: "admin", From: "system", GroupId: "nope", ClientMsgId: "x", Body: "x"}); code(err) != errcode.Forbidden {
		t.Fatalf("send to a group the sender is not in: %v", err)
	}
	// What the pipeline or the store would refuse is refused at once, with
	// its own code, rather than timing out as "unavailable, retry".
	bad := func(mod func(*logic.SendReq)) error {
		r := &logic.SendReq{AdminSecret: "admin", From: "system", To: "bob", ClientMsgId: "bad", Body: "x", WaitMs: 200}
		mod(r)
		_, err := h.Send(ctx, r)
		return err
	}
	for name, tc := range map[string]struct {
		mod  func(*logic.SendReq)
		want errcode.Code
	}{
		"empty body":               {func(r *logic.SendReq) { r.Body = "" }, errcode.BadField},
		"body not UTF-8":           {func(r *logic.SendReq) { r.Body = "\xff" }, errcode.BadField},
		"body too large":           {func(r *logic.SendReq) { r.Body = strings.Repeat("x", 70000) }, errcode.TooLarge},
		"reserved content type":    {func(r *logic.SendReq) { r.ContentType = protocol.ContentTypeRecall }, errcode.BadField},
		"content type with spaces": {func(r *logic.SendReq) { r.ContentType = "text/plain; charset=utf-8" }, errcode.BadField},
		"content type too long":    {func(r *logic.SendReq) { r.ContentType = strings.Repeat("a", 65) }, errcode.BadField},
		"reserved cmid":            {func(r *logic.SendReq) { r.ClientMsgId = protocol.OperatorRecallCMID(1) }, errcode.BadField},
	} {
		if err := bad(tc.mod); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "old", Owner: "system", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := bad(func(r *logic.SendReq) { r.To, r.GroupId = "", "old" }); code(err) != errcode.ConvNotFound {
		t.Fatalf("send to a dissolved group: %v, want conv_not_found", err)
	}
}
