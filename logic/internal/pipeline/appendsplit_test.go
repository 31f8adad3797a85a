package pipeline

import (
	"context"
	"sync"
	"testing"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// callLimitDP refuses a whole AppendMessages call whose bodies sum past
// limit with TooLarge, as dataproxy's -max-request-bytes does, and records
// the calls it answers or refuses.
type callLimitDP struct {
	*dpfake.DP
	limit int
	// code is the whole-call refusal (TooLarge unless set).
	code errcode.Code

	mu    sync.Mutex
	calls []appendCallRecord
}

type appendCallRecord struct {
	cmids     []string
	routeUids int
	refused   bool
}

func (d *callLimitDP) AppendMessages(ctx context.Context, req *dataproxy.AppendMessagesReq, o ...callopt.Option) (*dataproxy.AppendMessagesResp, error) {
	n := 0
	c := appendCallRecord{routeUids: len(req.RouteUids)}
	for _, it := range req.Items {
		n += len(it.Body)
		c.cmids = append(c.cmids, it.ClientMsgId)
	}
	c.refused = n > d.limit
	d.mu.Lock()
	d.calls = append(d.calls, c)
	d.mu.Unlock()
	if c.refused {
		code := d.code
		if code == 0 {
			code = errcode.TooLarge
		}
		return nil, errcode.Biz(code, "the messages of this call hold %d bytes; the limit is %d", n, d.limit)
	}
	return d.DP.AppendMessages(ctx, req, o...)
}

// newCallLimitProc returns a Processor whose dataproxy is d (the fake's
// users and routes serve its lookups).
func newCallLimitProc(d *callLimitDP, live liveSet, prod *fakeProducer) *Processor {
	q := newProc(d.DP, live, prod)
	return NewProcessor(d, q.users, q.router, prod, NewMetrics(nil), q.log)
}

// bobOnGW1WithCallLimit is alice and bob, bob online on gw1, behind a
// dataproxy that refuses calls whose bodies pass limit bytes.
func bobOnGW1WithCallLimit(limit int) (*callLimitDP, *Processor, *fakeProducer) {
	base := dpfake.New("alice", "bob")
	base.Routes = []*common.Route{{Uid: "bob", Device: "d", GatewayId: "gw1", ConnId: 1}}
	dp := &callLimitDP{DP: base, limit: limit}
	prod := &fakeProducer{}
	return dp, newCallLimitProc(dp, liveSet{"gw1": true}, prod), prod
}

// acksAndErrors returns the acks (cmid -> seq) and error codes (cmid ->
// code) produced.
func acksAndErrors(t *testing.T, msgs []kafkax.Msg) (acks map[string]int64, errs map[string]int32, ackOrder []string) {
	t.Helper()
	down, _ := decoded(t, msgs)
	acks, errs = map[string]int64{}, map[string]int32{}
	for _, rs := range down {
		for _, r := range rs {
			switch r.Kind {
			case events.DownKind_ACK:
				acks[r.Ack.ClientMsgId] = r.Ack.Seq
				ackOrder = append(ackOrder, r.Ack.ClientMsgId)
			case events.DownKind_ERROR:
				errs[r.Error.ClientMsgId] = r.Error.Code
			}
		}
	}
	return acks, errs, ackOrder
}

// A batch dataproxy refuses whole because its bodies together pass the
// call limit, though each message alone is within it, is sent again in
// halves, one after the other: every message is stored, in batch order
// (seqs follow send order), and the routes ride on the last part (no
// GetRoutes call), so the recipient is pushed every message.
func TestAppendRefusedWholeForItsSizeIsSentInHalves(t *testing.T) {
	dp, p, prod := bobOnGW1WithCallLimit(10)
	cmids := []string{"m1", "m2", "m3", "m4", "m5"}
	var recs []*events.UpRecord
	for _, c := range cmids {
		recs = append(recs, sendRec("alice", "bob", c, "12345")) // 5 bytes: two fit a call
	}
	if err := p.Process(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	acks, errs, _ := acksAndErrors(t, prod.msgs)
	if len(errs) != 0 {
		t.Fatalf("messages within the limits answered with errors %v", errs)
	}
	for i, c := range cmids {
		if acks[c] != int64(i+1) {
			t.Fatalf("acks %v: want m1..m5 as seqs 1..5 (batch order)", acks)
		}
	}
	// Calls: the whole batch (refused), then its halves in order, each
	// refused part split again; of the calls answered, only the last part
	// asks for the routes.
	var stored []string
	for i, c := range dp.calls {
		if len(c.cmids) > 2 && !c.refused {
			t.Fatalf("call %d (%v) over the limit answered", i, c.cmids)
		}
		last := i == len(dp.calls)-1
		if c.routeUids > 0 && !c.refused && !last {
			t.Fatalf("call %d (%v) reads the routes; only the last part may", i, c.cmids)
		}
		if last && c.routeUids == 0 {
			t.Fatalf("the last part (%v) does not read the routes", c.cmids)
		}
		if !c.refused {
			stored = append(stored, c.cmids...)
		}
	}
	if len(stored) != len(cmids) {
		t.Fatalf("stored in calls %v, want each of %v once", stored, cmids)
	}
	if dp.DP.RouteLookups != 0 {
		t.Fatalf("%d GetRoutes calls; the routes came with the last part", dp.DP.RouteLookups)
	}
	down, _ := decoded(t, prod.msgs)
	var pushed []int64
	for _, r := range down[kafkax.DownTopic("gw1")] {
		if r.Kind == events.DownKind_PUSH {
			pushed = append(pushed, r.Message.Seq)
		}
	}
	if len(pushed) != 5 || pushed[0] != 1 || pushed[4] != 5 {
		t.Fatalf("bob pushed seqs %v, want 1..5 in order", pushed)
	}
}

// Only a message refused on its own gets the call's refusal as its
// answer; the messages around it are stored, in order. When that message
// is the last part (which was to read the routes), the routes are looked
// up by GetRoutes and the others are still pushed.
func TestAppendSplitFailsOnlyTheItemRefusedAlone(t *testing.T) {
	dp, p, prod := bobOnGW1WithCallLimit(10)
	recs := []*events.UpRecord{
		sendRec("alice", "bob", "m1", "12345"),
		sendRec("alice", "bob", "big", "12345678901"), // over the call limit alone
		sendRec("alice", "bob", "m2", "12345"),
		sendRec("alice", "bob", "last", "12345678901"), // alone too: the last part
	}
	if err := p.Process(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	acks, errs, _ := acksAndErrors(t, prod.msgs)
	if len(errs) != 2 || errs["big"] != int32(errcode.TooLarge) || errs["last"] != int32(errcode.TooLarge) {
		t.Fatalf("errors %v, want too_large (1004) for big and last only", errs)
	}
	if len(acks) != 2 || acks["m1"] != 1 || acks["m2"] != 2 {
		t.Fatalf("acks %v, want m1 seq 1, m2 seq 2", acks)
	}
	if dp.DP.RouteLookups != 1 {
		t.Fatalf("%d GetRoutes calls, want 1 (the part that was to read the routes was refused)", dp.DP.RouteLookups)
	}
	down, _ := decoded(t, prod.msgs)
	var pushes int
	for _, r := range down[kafkax.DownTopic("gw1")] {
		if r.Kind == events.DownKind_PUSH {
			pushes++
		}
	}
	if pushes != 2 {
		t.Fatalf("bob pushed %d messages, want 2", pushes)
	}
}

// A whole-call refusal that is not about what the call carries together
// (here Forbidden) is not split: one call, and every sender gets it.
func TestAppendRefusedWholeForOtherReasonsFailsEveryItem(t *testing.T) {
	dp := &callLimitDP{DP: dpfake.New("alice", "bob"), limit: 0, code: errcode.Forbidden}
	prod := &fakeProducer{}
	p := newCallLimitProc(dp, liveSet{"gw1": true}, prod)
	recs := []*events.UpRecord{sendRec("alice", "bob", "m1", "a"), sendRec("alice", "bob", "m2", "b")}
	if err := p.Process(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	_, errs, _ := acksAndErrors(t, prod.msgs)
	if len(errs) != 2 || errs["m1"] != int32(errcode.Forbidden) || errs["m2"] != int32(errcode.Forbidden) {
		t.Fatalf("errors %v, want forbidden for both", errs)
	}
	if len(dp.calls) != 1 {
		t.Fatalf("%d calls, want 1 (no split)", len(dp.calls))
	}
}
