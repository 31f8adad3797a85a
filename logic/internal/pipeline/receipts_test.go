package pipeline

import (
	"context"
	"strconv"
	"strings"
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

// receiptSetup is a chat of alice and bob with two messages; alice on gw1,
// bob's phone (which reads) and web on gw2.
func receiptSetup(t *testing.T) (*dpfake.DP, *Processor, *fakeProducer) {
	t.Helper()
	dp := dpfake.New("alice", "bob", "carol")
	dp.Routes = []*common.Route{
		{Uid: "alice", Device: "d", GatewayId: "gw1", ConnId: 7},
		{Uid: "bob", Device: "phone", GatewayId: "gw2", ConnId: 1},
		{Uid: "bob", Device: "web", GatewayId: "gw2", ConnId: 2},
	}
	prod := &fakeProducer{}
	p := newProc(dp, liveSet{"gw1": true, "gw2": true}, prod)
	if err := p.Process(context.Background(), []*events.UpRecord{sendRec("alice", "bob", "m1", "a"), sendRec("alice", "bob", "m2", "b")}); err != nil {
		t.Fatal(err)
	}
	prod.msgs = nil
	return dp, p, prod
}

// bobReads is a read record of bob's phone.
func bobReads(conv string, seq int64) *events.UpRecord {
	r := rec(events.UpKind_READ, "bob", conv, seq)
	r.GatewayId, r.ConnId = "gw2", 1
	return r
}

// readFrames returns the read receipts produced, per gateway topic.
func readFrames(t *testing.T, prod *fakeProducer) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for topic, fs := range frames(t, prod.msgs) {
		for _, f := range fs {
			if f["type"] == "read" {
				out[topic] = append(out[topic], f)
			}
		}
	}
	prod.msgs = nil
	return out
}

// A read receipt announces the read cursor as saved, not the seq the
// client named: one above the conversation's last seq is cut to it, and a
// lower one, which the store ignores, announces the cursor (so a receipt
// never goes backwards, and a reader whose cursor moved by replying still
// has the other side told).
func TestReadReceiptAnnouncesTheSavedCursor(t *testing.T) {
	dp, p, prod := receiptSetup(t)
	ctx := context.Background()
	conv := "p:alice:bob"
	if err := p.Process(ctx, []*events.UpRecord{bobReads(conv, 1_000_000)}); err != nil {
		t.Fatal(err)
	}
	got := readFrames(t, prod)
	gw1, gw2 := got[kafkax.DownTopic("gw1")], got[kafkax.DownTopic("gw2")]
	// To alice, and to bob's web (not the reading phone), with seq 2.
	if len(gw1) != 1 || gw1[0]["seq"] != float64(2) || gw1[0]["uid"] != "bob" || gw1[0]["conv"] != conv {
		t.Fatalf("receipt to alice %v, want bob read %s up to 2 (the conversation's last seq)", gw1, conv)
	}
	if len(gw2) != 1 || gw2[0]["seq"] != float64(2) || gw2[0]["_targets"] != 1 {
		t.Fatalf("receipt to bob's other device %v, want one with seq 2", gw2)
	}
	cur, _ := dp.UpdateCursors(ctx, &dataproxy.UpdateCursorsReq{Updates: []*dataproxy.CursorUpdate{{Uid: "bob", ConvId: conv}}})
	if cur.Cursors[0].ReadSeq != 2 {
		t.Fatalf("saved read cursor %d, want 2", cur.Cursors[0].ReadSeq)
	}

	// A stale "read 1": the cursor stays at 2, and that is what alice is
	// told.
	if err := p.Process(ctx, []*events.UpRecord{bobReads(conv, 1)}); err != nil {
		t.Fatal(err)
	}
	if gw1 := readFrames(t, prod)[kafkax.DownTopic("gw1")]; len(gw1) != 1 || gw1[0]["seq"] != float64(2) {
		t.Fatalf("after a read below the saved cursor alice got %v, want one receipt with seq 2", gw1)
	}
}

// Reads of one (user, conversation) saved by one call get one receipt, of
// the cursor saved, whichever batch of the call carries it.
func TestReadReceiptsOfOneSaveAnnounceTheCursorOnce(t *testing.T) {
	_, p, prod := receiptSetup(t)
	conv := "p:alice:bob"
	if err := p.Process(context.Background(), []*events.UpRecord{bobReads(conv, 1), bobReads(conv, 2), bobReads(conv, 2)}); err != nil {
		t.Fatal(err)
	}
	gw1 := readFrames(t, prod)[kafkax.DownTopic("gw1")]
	if len(gw1) != 1 || gw1[0]["seq"] != float64(2) {
		t.Fatalf("receipts to alice %v, want one with seq 2", gw1)
	}

	// Two batches whose saves one call carries (they queue while an
	// earlier call is in flight): one receipt between them, with the
	// cursor saved.
	g := &heldCursorsDP{DP: p.dp.(*dpfake.DP), gate: make(chan struct{})}
	p.dp = g
	ctx := context.Background()
	prepare := func(r *events.UpRecord) *Prepared {
		t.Helper()
		prep, err := p.Prepare(ctx, []*events.UpRecord{r})
		if err != nil {
			t.Fatal(err)
		}
		return prep
	}
	type result struct {
		receipts []kafkax.Msg
		err      error
	}
	save := func(prep *Prepared) chan result {
		ch := make(chan result, 1)
		p.saveCursorsAsync(ctx, prep, func(rs []kafkax.Msg, err error) { ch <- result{rs, err} })
		return ch
	}
	lower, higher := prepare(bobReads(conv, 1)), prepare(bobReads(conv, 2))
	first := save(prepare(bobReads("p:alice:bob", 0)))
	waitFor(t, "the first call", func() bool { return g.ncalls() == 1 })
	second, third := save(lower), save(higher)
	g.gate <- struct{}{}
	g.gate <- struct{}{}
	var merged []map[string]any
	for i, ch := range []chan result{first, second, third} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("save %d: %v", i+1, r.err)
		}
		prod.msgs = r.receipts
		f := readFrames(t, prod)[kafkax.DownTopic("gw1")]
		for _, rc := range f {
			if rc["seq"] != float64(2) {
				t.Errorf("batch %d announced %v, not the saved cursor 2", i+1, rc)
			}
		}
		if i > 0 {
			merged = append(merged, f...)
		}
	}
	if len(merged) != 1 {
		t.Errorf("the two batches of one call sent alice %d receipts %v, want one", len(merged), merged)
	}
	if n := g.ncalls(); n != 2 {
		t.Fatalf("%d UpdateCursors calls, want 2 (the two later saves merged)", n)
	}
}

// heldCursorsDP counts UpdateCursors calls; each waits for a value on gate,
// then is answered by the fake.
type heldCursorsDP struct {
	*dpfake.DP
	gate  chan struct{}
	mu    sync.Mutex
	calls int
}

func (h *heldCursorsDP) UpdateCursors(ctx context.Context, req *dataproxy.UpdateCursorsReq, o ...callopt.Option) (*dataproxy.UpdateCursorsResp, error) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	select {
	case <-h.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.DP.UpdateCursors(ctx, req, o...)
}

func (h *heldCursorsDP) ncalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// refusingCursors refuses every UpdateCursors call.
type refusingCursors struct{ *dpfake.DP }

func (r *refusingCursors) UpdateCursors(context.Context, *dataproxy.UpdateCursorsReq, ...callopt.Option) (*dataproxy.UpdateCursorsResp, error) {
	return nil, errcode.Biz(errcode.BadField, "no")
}

// Nothing saved, nothing announced: a refused cursor update, and a read of
// a conversation the reader has no list entry in (the store answers 0),
// send no receipt, not even to the reader's other devices; the batch still
// completes.
func TestNoReadReceiptWithoutASavedCursor(t *testing.T) {
	_, p, prod := receiptSetup(t)
	ctx := context.Background()
	if err := p.Process(ctx, []*events.UpRecord{bobReads("p:bob:carol", 3)}); err != nil {
		t.Fatal(err)
	}
	if got := readFrames(t, prod); len(got) != 0 {
		t.Fatalf("a read of a conversation without messages announced: %v", got)
	}
	p.dp = &refusingCursors{p.dp.(*dpfake.DP)}
	if err := p.Process(ctx, []*events.UpRecord{bobReads("p:alice:bob", 2)}); err != nil {
		t.Fatalf("a refused cursor update failed the batch: %v", err)
	}
	if got := readFrames(t, prod); len(got) != 0 {
		t.Fatalf("a refused cursor update announced: %v", got)
	}
}

// Two devices of one user reading in one batch each hear of the other's
// read (each read's receipt leaves out the device that made it), with the
// cursor saved, and alice hears once.
func TestReadOnTwoDevicesTellsEachOther(t *testing.T) {
	_, p, prod := receiptSetup(t)
	conv := "p:alice:bob"
	web := rec(events.UpKind_READ, "bob", conv, 2)
	web.GatewayId, web.ConnId = "gw2", 2
	if err := p.Process(context.Background(), []*events.UpRecord{bobReads(conv, 1), web}); err != nil {
		t.Fatal(err)
	}
	down, _ := decoded(t, prod.msgs)
	told := map[string]int{}
	for topic, recs := range down {
		for _, r := range recs {
			if !strings.Contains(string(r.Frame), `"type":"read"`) {
				continue
			}
			if !strings.Contains(string(r.Frame), `"seq":2`) {
				t.Errorf("receipt %s on %s does not carry the saved cursor 2", r.Frame, topic)
			}
			for _, tg := range r.Targets {
				told[topic+"/"+tg.Uid+"/"+strconv.FormatInt(tg.ConnId, 10)]++
			}
		}
	}
	want := map[string]int{kafkax.DownTopic("gw1") + "/alice/7": 1, kafkax.DownTopic("gw2") + "/bob/1": 1, kafkax.DownTopic("gw2") + "/bob/2": 1}
	if len(told) != len(want) {
		t.Fatalf("receipts went to %v, want %v", told, want)
	}
	for k, n := range want {
		if told[k] != n {
			t.Fatalf("receipts went to %v, want %v", told, want)
		}
	}
}
