package handler

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/pipeline"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// The operator recalls any message at any age through the pipeline; the
// recall event carries the reason, a second call is a duplicate, and a
// message its sender recalled first is reported as such.
func TestOperatorRecall(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	uc := users.New(dp, time.Minute, 10)
	router := routing.New(dp, live{})
	prod := &pipeProducer{t: t, proc: pipeline.NewProcessor(dp, uc, router, sink{}, pipeline.NewMetrics(nil), log)}
	h := New(Config{AdminSecret: "admin", RecallSecret: "mod", TokenSecret: []byte("t")}, dp, uc, router, prod, log)
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	old := time.Now().Add(-24 * time.Hour).UnixMilli()
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: "a1", ContentType: "text", Body: "bad words", CreatedAtMs: old},
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "b1", ContentType: "text", Body: "fine", CreatedAtMs: old},
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "b2", ContentType: "text", Body: "oops", CreatedAtMs: old},
	}}); err != nil {
		t.Fatal(err)
	}
	// Bob takes back his own message 3 while it is fresh enough for him.
	if r, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "r", ContentType: protocol.ContentTypeRecall, RecallSeq: 3, RecallWindowMs: 1 << 40},
	}}); err != nil || r.Results[0].Seq != 4 {
		t.Fatalf("bob's recall: %+v %v", r, err)
	}

	req := &logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 1, Reason: "hate"}
	r, err := h.Recall(ctx, req)
	if err != nil || r.Seq != 5 || r.Duplicate || r.AlreadyRecalled {
		t.Fatalf("recall: %+v %v", r, err)
	}
	sync, err := dp.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv, Limit: 50})
	if err != nil || len(sync.Messages) != 5 {
		t.Fatalf("sync: %+v %v", sync, err)
	}
	if m := sync.Messages[0]; !m.Recalled || m.Body != "" {
		t.Fatalf("recalled message: %+v", m)
	}
	if ev := sync.Messages[4]; ev.ContentType != protocol.ContentTypeRecall || ev.RefSeq != 1 || ev.Body != "hate" ||
		ev.Sender != "alice" || ev.ClientMsgId != protocol.OperatorRecallCMID(1) {
		t.Fatalf("recall event: %+v", ev)
	}
	// Again, with the recall secret, which opens nothing else.
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "mod", ConvId: conv, Seq: 1, Reason: "hate"}); err != nil || r.Seq != 5 || !r.Duplicate {
		t.Fatalf("second call: %+v %v", r, err)
	}
	if _, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "mod", Uid: "alice", Device: "web"}); code(err) != errcode.Unauthorized {
		t.Fatalf("IssueToken with the recall secret: %v", err)
	}
	if _, err := h.Send(ctx, &logic.SendReq{AdminSecret: "mod", From: "alice", To: "bob", ClientMsgId: "s", Body: "x"}); code(err) != errcode.Unauthorized {
		t.Fatalf("Send with the recall secret: %v", err)
	}
	if _, err := h.CreateGroup(ctx, &logic.CreateGroupReq{AdminSecret: "mod", Name: "x", Owner: "alice"}); code(err) != errcode.Unauthorized {
		t.Fatalf("CreateGroup with the recall secret: %v", err)
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 3, Reason: "x"}); err != nil || !r.AlreadyRecalled || r.Seq != 0 {
		t.Fatalf("a message its sender recalled: %+v %v", r, err)
	}

	for name, tc := range map[string]struct {
		req  *logic.RecallReq
		want errcode.Code
	}{
		"bad secret":     {&logic.RecallReq{AdminSecret: "nope", ConvId: conv, Seq: 2, Reason: "x"}, errcode.Unauthorized},
		"bad conv":       {&logic.RecallReq{AdminSecret: "admin", ConvId: "p:alice", Seq: 2, Reason: "x"}, errcode.BadField},
		"zero seq":       {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Reason: "x"}, errcode.BadField},
		"no reason":      {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 2}, errcode.BadField},
		"long reason":    {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 2, Reason: strings.Repeat("x", protocol.MaxRecallReason+1)}, errcode.BadField},
		"reason not UTF": {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 2, Reason: "\xff"}, errcode.BadField},
		"no message":     {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 99, Reason: "x"}, errcode.BadField},
		"a recall event": {&logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 4, Reason: "x"}, errcode.BadField},
	} {
		if _, err := h.Recall(ctx, tc.req); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Nothing of that was stored.
	if s, _ := dp.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv, Limit: 50}); len(s.Messages) != 5 {
		t.Fatalf("%d messages after refused recalls", len(s.Messages))
	}

	// A dissolved group's history stays readable, so its messages can
	// still be recalled.
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "gone", Owner: "alice", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: "g:gone", Sender: "bob", ClientMsgId: "g1", ContentType: "text", Body: "bad"}}}); err != nil || r.Results[0].Seq != 1 {
		t.Fatalf("group message: %+v %v", r, err)
	}
	if _, err := dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "gone"}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: "g:gone", Seq: 1, Reason: "x"}); err != nil || r.Seq != 2 || r.Duplicate {
		t.Fatalf("recall in a dissolved group: %+v %v", r, err)
	}

	// Bob recalls message 2 himself after the call looked at it and before
	// the pipeline stores the operator's recall, which it then refuses:
	// the call learns of it instead of waiting out its time.
	prod.before = func() {
		prod.before = nil
		if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
			{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "r2", ContentType: protocol.ContentTypeRecall, RecallSeq: 2, RecallWindowMs: 1 << 40},
		}}); err != nil {
			t.Error(err)
		}
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: 2, Reason: "x", WaitMs: 10_000}); err != nil || !r.AlreadyRecalled {
		t.Fatalf("recall that lost the race: %+v %v", r, err)
	}

	// A group dissolved while the recall waits: the recall is stored all
	// the same.
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "brief", Owner: "alice", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: "g:brief", Sender: "bob", ClientMsgId: "g1", ContentType: "text", Body: "bad"}}}); err != nil {
		t.Fatal(err)
	}
	prod.before = func() {
		prod.before = nil
		if _, err := dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "brief"}); err != nil {
			t.Error(err)
		}
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: "g:brief", Seq: 1, Reason: "x", WaitMs: 10_000}); err != nil || r.Seq != 2 {
		t.Fatalf("recall in a group dissolved meanwhile: %+v %v", r, err)
	}
	// A recall made before the group was dissolved keeps its answer.
	if _, err := dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "past", Owner: "alice", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: "g:past", Sender: "bob", ClientMsgId: "g1", ContentType: "text", Body: "bad"}}}); err != nil {
		t.Fatal(err)
	}
	first, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: "g:past", Seq: 1, Reason: "x"})
	if err != nil || first.Seq != 2 {
		t.Fatalf("group recall: %+v %v", first, err)
	}
	if _, err := dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "past"}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: "g:past", Seq: 1, Reason: "x"}); err != nil || !r.Duplicate || r.Seq != 2 {
		t.Fatalf("the same recall after the group was dissolved: %+v %v", r, err)
	}

	// A client message stored under the id of the operator's recall (from
	// before such ids were refused) is not taken for that recall.
	r6, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "b6", ContentType: "text", Body: "abuse"}}})
	if err != nil {
		t.Fatal(err)
	}
	seq := r6.Results[0].Seq
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: protocol.OperatorRecallCMID(seq), ContentType: "text", Body: "legacy"}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Recall(ctx, &logic.RecallReq{AdminSecret: "admin", ConvId: conv, Seq: seq, Reason: "x", WaitMs: 10_000}); code(err) != errcode.BadField {
		t.Fatalf("recall whose id a client message holds: %+v %v", r, err)
	}
}
