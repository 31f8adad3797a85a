package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// captureDP records the AppendItems logic sends.
type captureDP struct {
	*dpfake.DP
	mu    sync.Mutex
	items []*dataproxy.AppendItem
}

func (d *captureDP) AppendMessages(ctx context.Context, req *dataproxy.AppendMessagesReq, o ...callopt.Option) (*dataproxy.AppendMessagesResp, error) {
	d.mu.Lock()
	d.items = append(d.items, req.Items...)
	d.mu.Unlock()
	return d.DP.AppendMessages(ctx, req, o...)
}

func (d *captureDP) last() *dataproxy.AppendItem {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.items[len(d.items)-1]
}

// recallSetup stores alice's message 1 to bob at t0 with logic's clock
// and returns the processor (its clock settable) and the capturing fake.
func recallSetup(t *testing.T, t0 time.Time) (*Processor, *captureDP, *fakeProducer) {
	t.Helper()
	base := dpfake.New("alice", "bob")
	dp := &captureDP{DP: base}
	prod := &fakeProducer{}
	q := newProc(base, liveSet{"gw1": true}, prod)
	p := NewProcessor(dp, q.users, q.router, prod, NewMetrics(nil), q.log)
	p.now = func() time.Time { return t0 }
	if err := p.Process(context.Background(), []*events.UpRecord{sendRec("alice", "bob", "m1", "oops")}); err != nil {
		t.Fatal(err)
	}
	prod.msgs = nil
	return p, dp, prod
}

// recallAnswer processes r at logic time now and returns the error code
// its sender got (0: acknowledged).
func recallAnswer(t *testing.T, p *Processor, prod *fakeProducer, r *events.UpRecord, now time.Time) int32 {
	t.Helper()
	p.now = func() time.Time { return now }
	if err := p.Process(context.Background(), []*events.UpRecord{r}); err != nil {
		t.Fatal(err)
	}
	acks, errs, _ := acksAndErrors(t, prod.msgs)
	prod.msgs = nil
	if _, ok := acks[r.ClientMsgId]; ok {
		return 0
	}
	return errs[r.ClientMsgId]
}

func clientRecall(cmid string, seq int64, receivedAt time.Time) *events.UpRecord {
	r := rec(events.UpKind_RECALL, "alice", "p:alice:bob", seq)
	r.ClientMsgId = cmid
	if !receivedAt.IsZero() {
		r.ReceivedAtMs = receivedAt.UnixMilli()
	}
	return r
}

// The recall window (2 minutes) is measured from when the user sent the
// recall (the gateway's ReceivedAtMs), not from when logic gets to it: a
// recall sent 30 s after the message and processed 3 minutes later (a
// backlog, a replay after a crash) is accepted; the window dataproxy gets
// is widened by the 2.5 minutes the record waited, and the recall event is
// still stored with logic's time as its created_at.
func TestRecallWindowCountsFromWhenTheUserSentIt(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	p, dp, prod := recallSetup(t, t0)
	now := t0.Add(3 * time.Minute)
	if code := recallAnswer(t, p, prod, clientRecall("r1", 1, t0.Add(30*time.Second)), now); code != 0 {
		t.Fatalf("recall sent 30 s after the message refused: code %d", code)
	}
	it := dp.last()
	if want := (2*time.Minute + 150*time.Second).Milliseconds(); it.RecallWindowMs != want {
		t.Fatalf("recall_window_ms %d, want %d (2 min widened by the 2.5 min waited)", it.RecallWindowMs, want)
	}
	if it.CreatedAtMs != now.UnixMilli() {
		t.Fatalf("recall event created_at %d, want logic's now %d", it.CreatedAtMs, now.UnixMilli())
	}
}

// The window still holds, measured from the user's recall: one sent 3
// minutes after the message is refused (Forbidden) however soon logic
// processes it, and so is one without ReceivedAtMs processed 3 minutes
// after. A ReceivedAtMs later than logic's clock counts as now: it never
// narrows the window.
func TestRecallWindowStillRefusesLateRecalls(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	window := DefaultRecallWindow.Milliseconds()
	cases := []struct {
		name       string
		receivedAt time.Time // zero: not stamped
		now        time.Time
		wantCode   int32
		wantWindow int64
	}{
		{"sent late, processed at once", t0.Add(3 * time.Minute), t0.Add(3*time.Minute + time.Second), int32(errcode.Forbidden), window + 1000},
		{"not stamped, processed late", time.Time{}, t0.Add(3 * time.Minute), int32(errcode.Forbidden), window},
		{"stamped in the future, processed late", t0.Add(time.Hour), t0.Add(3 * time.Minute), int32(errcode.Forbidden), window},
		{"stamped in the future, processed in time", t0.Add(time.Hour), t0.Add(time.Minute), 0, window},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, dp, prod := recallSetup(t, t0)
			if code := recallAnswer(t, p, prod, clientRecall("r1", 1, c.receivedAt), c.now); code != c.wantCode {
				t.Fatalf("answered with code %d, want %d", code, c.wantCode)
			}
			if it := dp.last(); it.RecallWindowMs != c.wantWindow {
				t.Fatalf("recall_window_ms %d, want %d", it.RecallWindowMs, c.wantWindow)
			}
		})
	}
}

// The operator's recall does not depend on the recall window: dataproxy
// gets a window of 0 (it skips the check for the operator), whatever logic
// is configured with, even a negative window, which dataproxy refuses
// (bad_field) on any recall. A user's recall never carries a negative one
// either.
func TestOperatorRecallSendsNoWindow(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	p, dp, prod := recallSetup(t, t0)
	p.SetRecallWindow(-time.Minute)
	if code := recallAnswer(t, p, prod, clientRecall("r1", 1, t0.Add(time.Second)), t0.Add(time.Second)); code != int32(errcode.Forbidden) {
		t.Fatalf("a user's recall with a negative window answered %d, want forbidden", code)
	}
	if it := dp.last(); it.RecallWindowMs != 0 {
		t.Fatalf("a user's recall sent with recall_window_ms %d, want 0", it.RecallWindowMs)
	}
	op := &events.UpRecord{Kind: events.UpKind_RECALL, Sender: "alice", Device: "server", ConvId: "p:alice:bob", Seq: 1,
		ClientMsgId: protocol.OperatorRecallCMID(1), Body: "moderated", ByOperator: true, ReceivedAtMs: t0.UnixMilli()}
	if code := recallAnswer(t, p, prod, op, t0.Add(24*time.Hour)); code != 0 {
		t.Fatalf("the operator's recall of a day-old message answered %d", code)
	}
	if it := dp.last(); it.RecallWindowMs != 0 || !it.ByOperator {
		t.Fatalf("the operator's recall sent with recall_window_ms %d (by operator %v), want 0", it.RecallWindowMs, it.ByOperator)
	}
}
