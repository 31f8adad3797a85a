package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/discovery"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

type fakeProducer struct {
	msgs []kafkax.Msg
	fail int
}

func (p *fakeProducer) SendAll(_ context.Context, msgs []kafkax.Msg) error {
	if p.fail > 0 {
		p.fail--
		return errors.New("broker down")
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

type liveSet map[string]bool

func (l liveSet) Get(id string) (discovery.Gateway, bool)   { return discovery.Gateway{ID: id}, l[id] }
func (l liveSet) Confirm(_ context.Context, id string) bool { return l[id] }

func newProc(dp *dpfake.DP, live liveSet, prod *fakeProducer) *Processor {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewProcessor(dp, users.New(dp, 1e9, 100), routing.New(dp, live), prod, NewMetrics(nil), log)
}

func sendRec(from, to, cmid, body string) *events.UpRecord {
	return &events.UpRecord{Kind: events.UpKind_SEND, Sender: from, Device: "d", GatewayId: "gw1", ConnId: 7,
		ClientMsgId: cmid, To: to, ConvId: ids.P2P(from, to), ContentType: "text", Body: body}
}

// decoded splits produced records by topic.
func decoded(t *testing.T, msgs []kafkax.Msg) (down map[string][]*events.DownRecord, tasks []*events.TaskRecord) {
	t.Helper()
	down = map[string][]*events.DownRecord{}
	for _, m := range msgs {
		if m.Topic == kafkax.TopicTask {
			var tr events.TaskRecord
			if err := kafkax.Decode(m.Value, &tr); err != nil {
				t.Fatal(err)
			}
			tasks = append(tasks, &tr)
			continue
		}
		var dr events.DownRecord
		if err := kafkax.Decode(m.Value, &dr); err != nil {
			t.Fatal(err)
		}
		down[m.Topic] = append(down[m.Topic], &dr)
	}
	return down, tasks
}

// The users' routes come with the append call; when dataproxy could not
// read them there, a GetRoutes call finds them and the outputs are the same.
func TestProcessOnlineAndOffline(t *testing.T) {
	t.Run("routes with the append", func(t *testing.T) { testOnlineAndOffline(t, false) })
	t.Run("route lookup failed in the append", func(t *testing.T) { testOnlineAndOffline(t, true) })
}

func testOnlineAndOffline(t *testing.T, appendRoutesFail bool) {
	dp := dpfake.New("alice", "bob", "carol")
	if appendRoutesFail {
		dp.NoAppendRoutes = 1
	}
	// bob on two gateways, a stale route on a dead gateway; carol offline.
	dp.Routes = []*common.Route{
		{Uid: "bob", Device: "phone", GatewayId: "gw1", ConnId: 1},
		{Uid: "bob", Device: "web", GatewayId: "gw2", ConnId: 2},
		{Uid: "bob", Device: "old", GatewayId: "dead", ConnId: 3},
		{Uid: "alice", Device: "d", GatewayId: "gw1", ConnId: 7},
		{Uid: "alice", Device: "tablet", GatewayId: "gw2", ConnId: 8},
	}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true, "gw2": true}, prod)
	recs := []*events.UpRecord{
		sendRec("alice", "bob", "a1", "hi"),
		sendRec("alice", "carol", "a2", "yo"),
		sendRec("alice", "bob", "a1", "hi"),            // retransmit
		sendRec("alice", "zed", "a3", "who"),           // unknown user
		sendRec("alice", "bob", "a4", "much too long"), // rejected by the store
	}
	if err := p.Process(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	down, tasks := decoded(t, prod.msgs)
	if len(down[kafkax.DownTopic("dead")]) != 0 {
		t.Fatal("record produced for a dead gateway")
	}
	var acks, errs []*events.DownRecord
	pushes := map[string][]*events.Target{}
	for gw, recs := range down {
		for _, r := range recs {
			switch r.Kind {
			case events.DownKind_ACK:
				acks = append(acks, r)
			case events.DownKind_ERROR:
				errs = append(errs, r)
			case events.DownKind_PUSH:
				pushes[gw] = append(pushes[gw], r.Targets...)
			}
		}
	}
	if len(acks) != 3 || acks[0].Ack.Seq != 1 || acks[1].Ack.Seq != 1 || acks[2].Ack.Seq != 1 || !acks[2].Ack.Duplicate {
		t.Fatalf("acks = %+v", acks)
	}
	if len(errs) != 2 || errs[0].Error.Code != int32(errcode.UserNotFound) || errs[1].Error.Code != int32(errcode.TooLarge) || errs[1].Error.ClientMsgId != "a4" {
		t.Fatalf("errors = %+v", errs)
	}
	// bob's phone on gw1; bob's web and alice's tablet on gw2; never
	// alice's sending connection.
	if len(pushes["gochat.down.gw1"]) != 1 || pushes["gochat.down.gw1"][0].ConnId != 1 {
		t.Fatalf("gw1 pushes = %+v", pushes["gochat.down.gw1"])
	}
	gw2 := pushes["gochat.down.gw2"]
	// a1 -> bob's web and alice's tablet; a2 (carol is offline) -> alice's tablet.
	if len(gw2) != 3 {
		t.Fatalf("gw2 targets: %+v", gw2)
	}
	var bobWeb, tablet int
	for _, tg := range gw2 {
		switch {
		case tg.Uid == "bob" && tg.ConnId == 2:
			bobWeb++
		case tg.Uid == "alice" && tg.ConnId == 8:
			tablet++
		case tg.ConnId == 7:
			t.Fatal("pushed back to the sending connection")
		}
	}
	if bobWeb != 1 || tablet != 2 {
		t.Fatalf("gw2 targets: bob web %d (want 1), alice tablet %d (want 2)", bobWeb, tablet)
	}
	if len(tasks) != 1 || tasks[0].OfflinePush.Uid != "carol" || tasks[0].OfflinePush.Preview != "yo" {
		t.Fatalf("tasks = %+v", tasks)
	}
	if want := map[bool]int{false: 0, true: 1}[appendRoutesFail]; dp.RouteLookups != want {
		t.Fatalf("%d GetRoutes calls, want %d", dp.RouteLookups, want)
	}
}

func TestProcessRetriesTransientFailures(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.FailAppend = 2
	prod := &fakeProducer{fail: 2}
	p := newProc(dp, liveSet{"gw1": true}, prod)
	if err := p.Process(context.Background(), []*events.UpRecord{sendRec("alice", "bob", "x", "hi")}); err != nil {
		t.Fatal(err)
	}
	if dp.Appends != 3 {
		t.Fatalf("append called %d times, want 3", dp.Appends)
	}
	down, _ := decoded(t, prod.msgs)
	if acks := down[kafkax.DownTopic("gw1")]; len(acks) != 1 || acks[0].Ack.Seq != 1 {
		t.Fatalf("after retries: %+v", acks)
	}
}

func TestProcessStopsWhenContextEnds(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.FailAppend = 1 << 30
	p := newProc(dp, liveSet{"gw1": true}, &fakeProducer{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "x", "hi")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestPreviewCutsAtRuneBoundary(t *testing.T) {
	s := ""
	for range 60 {
		s += "é"
	}
	p := preview(s)
	if len(p) > previewLen || len(p)%2 != 0 {
		t.Fatalf("preview len %d", len(p))
	}
}

// A record stored by an earlier batch (a replay after logic stopped
// before producing, or a client's retransmission) is acknowledged as a
// duplicate and pushed again as stored, with the offline task, since the
// first push may never have left. The retransmitted body is not used.
func TestDuplicatePushedAgainAsStored(t *testing.T) {
	dp := dpfake.New("alice", "bob", "carol")
	dp.Routes = []*common.Route{{Uid: "bob", Device: "phone", GatewayId: "gw1", ConnId: 1}}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true}, prod)
	ctx := context.Background()
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a1", "first"), sendRec("alice", "carol", "c1", "hey")}); err != nil {
		t.Fatal(err)
	}
	prod.msgs = nil
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a1", "changed"), sendRec("alice", "carol", "c1", "hey")}); err != nil {
		t.Fatal(err)
	}
	down, tasks := decoded(t, prod.msgs)
	var acks, pushes []*events.DownRecord
	for _, rs := range down {
		for _, r := range rs {
			switch r.Kind {
			case events.DownKind_ACK:
				acks = append(acks, r)
			case events.DownKind_PUSH:
				pushes = append(pushes, r)
			}
		}
	}
	if len(acks) != 2 || !acks[0].Ack.Duplicate || !acks[1].Ack.Duplicate {
		t.Fatalf("acks = %+v", acks)
	}
	if len(pushes) != 1 || pushes[0].Message.Seq != 1 || pushes[0].Message.Body != "first" || pushes[0].Targets[0].Uid != "bob" {
		t.Fatalf("pushes = %+v", pushes)
	}
	if len(tasks) != 1 || tasks[0].OfflinePush.Uid != "carol" || tasks[0].OfflinePush.Seq != 1 || tasks[0].OfflinePush.Preview != "hey" {
		t.Fatalf("tasks = %+v", tasks)
	}
}

// A retransmission of a message recalled since gets no offline
// notification: there is nothing left to notify of.
func TestDuplicateOfRecalledMessageNotifiesNoOne(t *testing.T) {
	dp := dpfake.New("alice", "carol")
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true}, prod)
	ctx := context.Background()
	recall := rec(events.UpKind_RECALL, "alice", ids.P2P("alice", "carol"), 1)
	recall.ClientMsgId = "r1"
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "carol", "c1", "oops"), recall}); err != nil {
		t.Fatal(err)
	}
	prod.msgs = nil
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "carol", "c1", "oops")}); err != nil {
		t.Fatal(err)
	}
	if _, tasks := decoded(t, prod.msgs); len(tasks) != 0 {
		t.Fatalf("tasks for a recalled message's retransmission: %+v", tasks)
	}
}

// With archiving on, every message pushed becomes an ARCHIVE task keyed by
// its conversation: new ones, recall events, and a duplicate pushed again
// as stored (at least once); rejected sends and cursor updates do not.
func TestArchiveTasks(t *testing.T) {
	dp := dpfake.New("alice", "bob", "carol")
	dp.Routes = []*common.Route{{Uid: "bob", Device: "phone", GatewayId: "gw1", ConnId: 1}}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true}, prod)
	p.SetArchive(true)
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	recall := rec(events.UpKind_RECALL, "alice", conv, 1)
	recall.ClientMsgId = "r1"
	read := rec(events.UpKind_READ, "bob", conv, 1)
	batch := []*events.UpRecord{sendRec("alice", "bob", "a1", "first"), sendRec("alice", "carol", "c1", "hey"),
		sendRec("alice", "zed", "z1", "nobody"), read, recall}
	if err := p.Process(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a1", "first")}); err != nil { // the batch replayed
		t.Fatal(err)
	}
	var (
		archived []*common.Message
		keys     []string
		offline  []*events.OfflinePush
	)
	for _, m := range prod.msgs {
		if m.Topic != kafkax.TopicTask {
			continue
		}
		var tr events.TaskRecord
		if err := kafkax.Decode(m.Value, &tr); err != nil {
			t.Fatal(err)
		}
		switch tr.Kind {
		case events.TaskKind_ARCHIVE:
			archived = append(archived, tr.Archive)
			keys = append(keys, string(m.Key))
		case events.TaskKind_OFFLINE_PUSH:
			offline = append(offline, tr.OfflinePush)
		}
	}
	// Offline pushes are as without archiving: carol's, once.
	if len(offline) != 1 || offline[0].Uid != "carol" || offline[0].Seq != 1 {
		t.Fatalf("offline-push tasks = %+v", offline)
	}
	type row struct {
		conv string
		seq  int64
		body string
		ct   string
	}
	// The replay of seq 1 after its recall: recalled as stored, with the
	// body that was sent (the store has emptied its own).
	want := []row{{conv, 1, "first", "text"}, {ids.P2P("alice", "carol"), 1, "hey", "text"},
		{conv, 2, "", "gochat.recall"}, {conv, 1, "first", "text"}}
	if len(archived) != len(want) {
		t.Fatalf("%d archive tasks, want %d: %+v", len(archived), len(want), archived)
	}
	for i, w := range want {
		m := archived[i]
		if m.ConvId != w.conv || m.Seq != w.seq || m.Body != w.body || m.ContentType != w.ct || keys[i] != w.conv {
			t.Fatalf("archive task %d = %+v key %s, want %+v", i, m, keys[i], w)
		}
	}
	if archived[2].RefSeq != 1 || !archived[3].Recalled {
		t.Fatalf("recall event %+v, retransmission %+v", archived[2], archived[3])
	}

	// Off (the default): none.
	prod.msgs = nil
	p.SetArchive(false)
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a2", "second")}); err != nil {
		t.Fatal(err)
	}
	if _, tasks := decoded(t, prod.msgs); len(tasks) != 0 {
		t.Fatalf("tasks with archiving off: %+v", tasks)
	}
}

// With moderation on, every message sent (new, or pushed again as stored
// and not recalled since) becomes a MODERATE task; recall events and
// rejected sends do not. The operator's
// recall of a message, in its sender's name, is pushed with its reason as
// the event's body.
func TestModerationTasksAndOperatorRecall(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.Routes = []*common.Route{{Uid: "bob", Device: "phone", GatewayId: "gw1", ConnId: 1}}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true}, prod)
	p.SetModerate(true)
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	moderated := func() (out []*common.Message) {
		t.Helper()
		_, tasks := decoded(t, prod.msgs)
		for _, tr := range tasks {
			if tr.Kind == events.TaskKind_MODERATE {
				out = append(out, tr.Moderate)
			}
		}
		prod.msgs = nil
		return out
	}
	reserved := sendRec("alice", "bob", protocol.OperatorRecallCMID(9), "sneaky")
	batch := []*events.UpRecord{sendRec("alice", "bob", "a1", "bad"), sendRec("alice", "zed", "z1", "nobody"), reserved}
	if err := p.Process(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if m := moderated(); len(m) != 1 || m[0].Seq != 1 || m[0].Body != "bad" || m[0].Sender != "alice" {
		t.Fatalf("moderation tasks: %+v", m)
	}
	if s, _ := dp.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv, Limit: 50}); len(s.Messages) != 1 {
		t.Fatalf("a send with a reserved cmid was stored: %+v", s.Messages)
	}
	// Replayed: moderated again (the verdict is idempotent).
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a1", "bad")}); err != nil {
		t.Fatal(err)
	}
	if m := moderated(); len(m) != 1 || m[0].Seq != 1 {
		t.Fatalf("moderation tasks of the replay: %+v", m)
	}

	// The operator's recall, as logic's Recall RPC produces it.
	op := &events.UpRecord{Kind: events.UpKind_RECALL, Sender: "alice", Device: "server", ConvId: conv, Seq: 1,
		ClientMsgId: protocol.OperatorRecallCMID(1), Body: "spam", ByOperator: true}
	// Not the operator's: a send marked as such, a client's recall with the
	// reserved cmid, an operator's recall under another cmid.
	fakeOp := sendRec("alice", "bob", "a2", "x")
	fakeOp.ByOperator = true
	clientRecall := rec(events.UpKind_RECALL, "alice", conv, 1)
	clientRecall.ClientMsgId = protocol.OperatorRecallCMID(1)
	otherCMID := rec(events.UpKind_RECALL, "alice", conv, 1)
	otherCMID.ClientMsgId, otherCMID.ByOperator = "r9", true
	if err := p.Process(ctx, []*events.UpRecord{fakeOp, clientRecall, otherCMID, op}); err != nil {
		t.Fatal(err)
	}
	down, _ := decoded(t, prod.msgs)
	var pushed []*common.Message
	var errs []*events.ErrorEvent
	for _, r := range down[kafkax.DownTopic("gw1")] {
		switch r.Kind {
		case events.DownKind_PUSH:
			pushed = append(pushed, r.Message)
		case events.DownKind_ERROR:
			errs = append(errs, r.Error)
		}
	}
	if len(pushed) != 1 || pushed[0].Seq != 2 || pushed[0].RefSeq != 1 || pushed[0].Body != "spam" || pushed[0].ContentType != protocol.ContentTypeRecall {
		t.Fatalf("pushes: %+v", pushed)
	}
	if len(errs) != 3 || errs[0].Code != int32(errcode.BadField) || errs[1].Code != int32(errcode.BadField) || errs[2].Code != int32(errcode.BadField) {
		t.Fatalf("errors: %+v", errs)
	}
	if m := moderated(); len(m) != 0 {
		t.Fatalf("moderation tasks of a recall: %+v", m)
	}
	// A replay of the recalled message is not moderated again.
	if err := p.Process(ctx, []*events.UpRecord{sendRec("alice", "bob", "a1", "bad")}); err != nil {
		t.Fatal(err)
	}
	if m := moderated(); len(m) != 0 {
		t.Fatalf("moderation tasks of a recalled message: %+v", m)
	}
}
