package pipeline

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

func rec(kind events.UpKind, from, conv string, seq int64) *events.UpRecord {
	return &events.UpRecord{Kind: kind, Sender: from, Device: "d", GatewayId: "gw1", ConnId: 7, ConvId: conv, Seq: seq}
}

// frames returns the FRAME records produced, decoded, per gateway topic.
func frames(t *testing.T, msgs []kafkax.Msg) map[string][]map[string]any {
	t.Helper()
	down, _ := decoded(t, msgs)
	out := map[string][]map[string]any{}
	for topic, rs := range down {
		for _, r := range rs {
			if r.Kind != events.DownKind_FRAME {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(r.Frame, &m); err != nil {
				t.Fatal(err)
			}
			m["_targets"] = len(r.Targets)
			out[topic] = append(out[topic], m)
		}
	}
	return out
}

func TestGroupMessagesUseTheGroupRouteSet(t *testing.T) {
	dp := dpfake.New("alice", "bob", "carol", "dave")
	ctx := context.Background()
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice", Members: []string{"bob", "carol"}}); err != nil {
		t.Fatal(err)
	}
	dp.Routes = []*common.Route{
		{Uid: "alice", Device: "d", GatewayId: "gw1", ConnId: 7}, // the sender's own connection
		{Uid: "bob", Device: "d", GatewayId: "gw1", ConnId: 1},
		{Uid: "carol", Device: "d", GatewayId: "gw2", ConnId: 2},
		{Uid: "dave", Device: "d", GatewayId: "gw2", ConnId: 3}, // not a member
	}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true, "gw2": true}, prod)
	send := &events.UpRecord{Kind: events.UpKind_SEND, Sender: "alice", GatewayId: "gw1", ConnId: 7, ClientMsgId: "g1", ConvId: "g:team", Body: "hi all"}
	outsider := &events.UpRecord{Kind: events.UpKind_SEND, Sender: "dave", GatewayId: "gw2", ConnId: 3, ClientMsgId: "d1", ConvId: "g:team", Body: "me too"}
	if err := p.Process(ctx, []*events.UpRecord{send, outsider}); err != nil {
		t.Fatal(err)
	}
	down, tasks := decoded(t, prod.msgs)
	var pushed []int64
	var acks, errs int
	for _, rs := range down {
		for _, r := range rs {
			switch r.Kind {
			case events.DownKind_PUSH:
				for _, tg := range r.Targets {
					pushed = append(pushed, tg.ConnId)
				}
			case events.DownKind_ACK:
				acks++
			case events.DownKind_ERROR:
				if r.Error.Code != int32(errcode.Forbidden) || r.Error.ClientMsgId != "d1" {
					t.Fatalf("outsider error = %+v", r.Error)
				}
				errs++
			}
		}
	}
	if len(pushed) != 2 || acks != 1 || errs != 1 || len(tasks) != 0 {
		t.Fatalf("pushed to %v, %d acks, %d errors, %d tasks", pushed, acks, errs, len(tasks))
	}
}

// An operator's recall in a dissolved group (which has no route set) is
// pushed to the members online, found member by member; a member's send to
// the same group is refused.
func TestOperatorRecallInDissolvedGroupPushed(t *testing.T) {
	dp := dpfake.New("alice", "bob", "carol", "dave")
	ctx := context.Background()
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "gone", Owner: "alice", Members: []string{"bob", "carol"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: "g:gone", Sender: "bob", ClientMsgId: "b1", ContentType: "text", Body: "bad"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "gone"}); err != nil {
		t.Fatal(err)
	}
	dp.Routes = []*common.Route{
		{Uid: "bob", Device: "d", GatewayId: "gw1", ConnId: 1},
		{Uid: "carol", Device: "d", GatewayId: "gw2", ConnId: 2},
		{Uid: "dave", Device: "d", GatewayId: "gw2", ConnId: 3}, // not a member
	}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true, "gw2": true}, prod)
	recall := &events.UpRecord{Kind: events.UpKind_RECALL, Sender: "bob", ClientMsgId: protocol.OperatorRecallCMID(1),
		ConvId: "g:gone", Seq: 1, Body: "removed", ByOperator: true}
	late := &events.UpRecord{Kind: events.UpKind_SEND, Sender: "carol", GatewayId: "gw2", ConnId: 2, ClientMsgId: "c1", ConvId: "g:gone", Body: "hello?"}
	if err := p.Process(ctx, []*events.UpRecord{recall, late}); err != nil {
		t.Fatal(err)
	}
	down, _ := decoded(t, prod.msgs)
	pushed := map[int64]bool{}
	var errs int
	for _, rs := range down {
		for _, r := range rs {
			switch r.Kind {
			case events.DownKind_PUSH:
				if r.Message.ContentType != protocol.ContentTypeRecall || r.Message.RefSeq != 1 || r.Message.Body != "removed" {
					t.Fatalf("push %+v", r.Message)
				}
				for _, tg := range r.Targets {
					pushed[tg.ConnId] = true
				}
			case events.DownKind_ERROR:
				if r.Error.Code != int32(errcode.ConvNotFound) || r.Error.ClientMsgId != "c1" {
					t.Fatalf("error = %+v", r.Error)
				}
				errs++
			}
		}
	}
	if len(pushed) != 2 || !pushed[1] || !pushed[2] || errs != 1 {
		t.Fatalf("pushed to %v, %d errors; want bob's and carol's connections and carol's send refused", pushed, errs)
	}

}

func TestReadReceiptsTypingAndRecall(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.Routes = []*common.Route{
		{Uid: "alice", Device: "phone", GatewayId: "gw1", ConnId: 7},
		{Uid: "alice", Device: "web", GatewayId: "gw1", ConnId: 8},
		{Uid: "bob", Device: "d", GatewayId: "gw2", ConnId: 1},
	}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true, "gw2": true}, prod)
	ctx := context.Background()
	conv := "p:alice:bob"
	first := sendRec("alice", "bob", "m1", "hello")
	if err := p.Process(ctx, []*events.UpRecord{first, sendRec("alice", "bob", "m2", "typo")}); err != nil {
		t.Fatal(err)
	}
	prod.msgs = nil

	read := rec(events.UpKind_READ, "bob", conv, 2)
	read.GatewayId, read.ConnId = "gw2", 1
	typing := rec(events.UpKind_TYPING, "bob", conv, 0)
	typing.GatewayId, typing.ConnId, typing.To = "gw2", 1, "alice"
	recall := rec(events.UpKind_RECALL, "alice", conv, 2)
	recall.ClientMsgId = "r1"
	badRecall := rec(events.UpKind_RECALL, "bob", conv, 1) // not bob's message
	badRecall.ClientMsgId, badRecall.GatewayId, badRecall.ConnId = "r2", "gw2", 1
	if err := p.Process(ctx, []*events.UpRecord{read, typing, recall, badRecall}); err != nil {
		t.Fatal(err)
	}
	f := frames(t, prod.msgs)
	gw1 := f[kafkax.DownTopic("gw1")]
	// The receipt goes out after the batch's other outputs: once the
	// cursor it announces is stored.
	if len(gw1) != 2 || gw1[1]["type"] != "read" || gw1[1]["uid"] != "bob" || gw1[1]["seq"] != float64(2) || gw1[1]["_targets"] != 2 {
		t.Fatalf("gw1 frames = %v", gw1)
	}
	if gw1[0]["type"] != "typing" || gw1[0]["from"] != "bob" {
		t.Fatalf("typing frame = %v", gw1[0])
	}
	// The recall is stored as message 3, pushed to bob and alice's web.
	down, _ := decoded(t, prod.msgs)
	var recallPushes, forbidden int
	for _, rs := range down {
		for _, r := range rs {
			if r.Kind == events.DownKind_PUSH && r.Message.ContentType == protocol.ContentTypeRecall && r.Message.RefSeq == 2 && r.Message.Seq == 3 {
				recallPushes += len(r.Targets)
			}
			if r.Kind == events.DownKind_ERROR && r.Error.ClientMsgId == "r2" && r.Error.Code == int32(errcode.Forbidden) {
				forbidden++
			}
		}
	}
	if recallPushes != 2 || forbidden != 1 {
		t.Fatalf("recall pushes %d (want 2), forbidden %d (want 1)", recallPushes, forbidden)
	}
	// Bob's read cursor moved; alice's own sends count as read for her.
	cur, _ := dp.UpdateCursors(ctx, &dataproxy.UpdateCursorsReq{Updates: []*dataproxy.CursorUpdate{
		{Uid: "bob", ConvId: conv}, {Uid: "alice", ConvId: conv}}})
	if cur.Cursors[0].ReadSeq != 2 || cur.Cursors[1].ReadSeq != 3 {
		t.Fatalf("cursors = %+v", cur.Cursors)
	}
}

// removeOnAppendDP removes bob from group "team" in each AppendMessages
// call, just before storing the batch (the removal commits first), and
// records the order of the calls that matter. Before that, an append
// waits a little for a group route lookup running beside it, so that
// such a lookup (read before the message is stored) reads the route set
// first, as it may in production; a pipeline that reads route sets only
// after the append is just delayed by it.
type removeOnAppendDP struct {
	*dpfake.DP
	groupRead     chan struct{} // closed by the first GetGroupRoutes
	groupReadOnce sync.Once
	mu            sync.Mutex
	order         []string
}

func newRemoveOnAppendDP(base *dpfake.DP) *removeOnAppendDP {
	return &removeOnAppendDP{DP: base, groupRead: make(chan struct{})}
}

func (d *removeOnAppendDP) note(s string) {
	d.mu.Lock()
	d.order = append(d.order, s)
	d.mu.Unlock()
}

func (d *removeOnAppendDP) AppendMessages(ctx context.Context, req *dataproxy.AppendMessagesReq, o ...callopt.Option) (*dataproxy.AppendMessagesResp, error) {
	select {
	case <-d.groupRead:
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := d.DP.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"bob"}}); err != nil {
		return nil, err
	}
	d.note("append")
	return d.DP.AppendMessages(ctx, req, o...)
}

func (d *removeOnAppendDP) GetGroupRoutes(ctx context.Context, req *dataproxy.GetGroupRoutesReq, o ...callopt.Option) (*dataproxy.GetGroupRoutesResp, error) {
	resp, err := d.DP.GetGroupRoutes(ctx, req, o...)
	d.note("group routes")
	d.groupReadOnce.Do(func() { close(d.groupRead) })
	return resp, err
}

// A group's route set is read once the append has returned, so a member
// removed before the message was stored is not pushed it; the members
// still in the group are.
func TestGroupRoutesReadAfterTheAppend(t *testing.T) {
	base := dpfake.New("alice", "bob", "carol")
	ctx := context.Background()
	if _, err := base.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice", Members: []string{"bob", "carol"}}); err != nil {
		t.Fatal(err)
	}
	base.Routes = []*common.Route{
		{Uid: "bob", Device: "d", GatewayId: "gw2", ConnId: 1},
		{Uid: "carol", Device: "d", GatewayId: "gw2", ConnId: 2},
	}
	dp := newRemoveOnAppendDP(base)
	prod := &fakeProducer{}
	q := newProc(base, liveSet{"gw1": true, "gw2": true}, prod)
	p := NewProcessor(dp, q.users, q.router, prod, NewMetrics(nil), q.log)
	send := &events.UpRecord{Kind: events.UpKind_SEND, Sender: "alice", GatewayId: "gw1", ConnId: 7, ClientMsgId: "g1", ConvId: "g:team", Body: "secret"}
	if err := p.Process(ctx, []*events.UpRecord{send}); err != nil {
		t.Fatal(err)
	}
	if len(dp.order) != 2 || dp.order[0] != "append" || dp.order[1] != "group routes" {
		t.Fatalf("calls %v, want the append, then the group's route set", dp.order)
	}
	down, _ := decoded(t, prod.msgs)
	var pushed []string
	for _, r := range down[kafkax.DownTopic("gw2")] {
		if r.Kind == events.DownKind_PUSH {
			for _, tg := range r.Targets {
				pushed = append(pushed, tg.Uid)
			}
		}
	}
	if len(pushed) != 1 || pushed[0] != "carol" {
		t.Fatalf("message stored after bob's removal pushed to %v, want carol only", pushed)
	}
}

// A group send the store refuses needs no route set: none is read.
func TestGroupRoutesNotReadForRefusedSends(t *testing.T) {
	base := dpfake.New("alice", "dave")
	ctx := context.Background()
	if _, err := base.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	dp := newRemoveOnAppendDP(base)
	prod := &fakeProducer{}
	q := newProc(base, liveSet{"gw1": true}, prod)
	p := NewProcessor(dp, q.users, q.router, prod, NewMetrics(nil), q.log)
	outsider := &events.UpRecord{Kind: events.UpKind_SEND, Sender: "dave", GatewayId: "gw1", ConnId: 3, ClientMsgId: "d1", ConvId: "g:team", Body: "hi"}
	if err := p.Process(ctx, []*events.UpRecord{outsider}); err != nil {
		t.Fatal(err)
	}
	if len(dp.order) != 1 || dp.order[0] != "append" {
		t.Fatalf("calls %v, want the append only", dp.order)
	}
}
