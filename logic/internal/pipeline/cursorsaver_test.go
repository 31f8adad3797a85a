package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// gatedDP records UpdateCursors calls; each call waits for a value on
// gate, and answers with the error it gets.
type gatedDP struct {
	*dpfake.DP
	gate  chan error
	mu    sync.Mutex
	calls [][]*dataproxy.CursorUpdate
}

func (g *gatedDP) UpdateCursors(ctx context.Context, req *dataproxy.UpdateCursorsReq, _ ...callopt.Option) (*dataproxy.UpdateCursorsResp, error) {
	g.mu.Lock()
	g.calls = append(g.calls, req.Updates)
	g.mu.Unlock()
	select {
	case err := <-g.gate:
		return &dataproxy.UpdateCursorsResp{}, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gatedDP) ncalls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}

func cursorPrep(ups ...*dataproxy.CursorUpdate) *Prepared {
	return &Prepared{cursors: ups}
}

func TestCursorSavesMergeWhileACallIsInFlight(t *testing.T) {
	g := &gatedDP{DP: dpfake.New("alice", "bob"), gate: make(chan error)}
	p := newProc(dpfake.New(), nil, &fakeProducer{})
	p.dp = g
	ctx := context.Background()

	results := make(chan error, 4)
	done := func(_ []kafkax.Msg, err error) { results <- err }
	p.saveCursorsAsync(ctx, cursorPrep(&dataproxy.CursorUpdate{Uid: "alice", ConvId: "c1", ReadSeq: 1, DeliveredSeq: 1}), done)
	waitFor(t, "the first call", func() bool { return g.ncalls() == 1 })
	// Three more batches while the first call is in flight: merged into one
	// call, keeping the highest values per (user, conversation).
	p.saveCursorsAsync(ctx, cursorPrep(&dataproxy.CursorUpdate{Uid: "alice", ConvId: "c1", ReadSeq: 5, DeliveredSeq: 5}), done)
	p.saveCursorsAsync(ctx, cursorPrep(&dataproxy.CursorUpdate{Uid: "alice", ConvId: "c1", ReadSeq: 3, DeliveredSeq: 7}), done)
	p.saveCursorsAsync(ctx, cursorPrep(&dataproxy.CursorUpdate{Uid: "bob", ConvId: "c1", DeliveredSeq: 2}), done)
	select {
	case err := <-results:
		t.Fatalf("a save finished before its call: %v", err)
	default:
	}
	g.gate <- nil // first call answers
	if err := <-results; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the merged call", func() bool { return g.ncalls() == 2 })
	g.gate <- nil
	for range 3 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	g.mu.Lock()
	merged := g.calls[1]
	g.mu.Unlock()
	if len(merged) != 2 {
		t.Fatalf("merged call carries %d updates, want 2: %v", len(merged), merged)
	}
	a, b := merged[0], merged[1]
	if a.Uid != "alice" || a.ReadSeq != 5 || a.DeliveredSeq != 7 {
		t.Errorf("alice's merged cursor %+v, want read 5 delivered 7", a)
	}
	if b.Uid != "bob" || b.ReadSeq != 0 || b.DeliveredSeq != 2 {
		t.Errorf("bob's merged cursor %+v, want read 0 delivered 2", b)
	}
	if n := g.ncalls(); n != 2 {
		t.Errorf("%d calls for 4 batches, want 2", n)
	}
}

func TestCursorSaveRefusedIsDroppedNotFailed(t *testing.T) {
	g := &gatedDP{DP: dpfake.New(), gate: make(chan error, 1)}
	p := newProc(dpfake.New(), nil, &fakeProducer{})
	p.dp = g
	g.gate <- errcode.Biz(errcode.BadField, "no")
	if _, err := p.SaveCursors(context.Background(), cursorPrep(&dataproxy.CursorUpdate{Uid: "alice", ConvId: "c1", ReadSeq: 1})); err != nil {
		t.Fatalf("a refused cursor update failed the batch: %v", err)
	}
}

func TestCursorSaveOutlivesOneCancelledCaller(t *testing.T) {
	g := &gatedDP{DP: dpfake.New(), gate: make(chan error)}
	p := newProc(dpfake.New(), nil, &fakeProducer{})
	p.dp = g
	cctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	p.saveCursorsAsync(cctx, cursorPrep(&dataproxy.CursorUpdate{Uid: "alice", ConvId: "c1", ReadSeq: 1}), func(_ []kafkax.Msg, err error) { first <- err })
	waitFor(t, "the first call", func() bool { return g.ncalls() == 1 })
	second := make(chan error, 1)
	p.saveCursorsAsync(context.Background(), cursorPrep(&dataproxy.CursorUpdate{Uid: "bob", ConvId: "c1", ReadSeq: 1}), func(_ []kafkax.Msg, err error) { second <- err })
	// The first call carries only the cancelled caller's save: it ends.
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled save: %v, want context.Canceled", err)
	}
	// The second save started its own call with a live context.
	waitFor(t, "the second call", func() bool { return g.ncalls() == 2 })
	g.gate <- nil
	if err := <-second; err != nil {
		t.Fatalf("second save: %v", err)
	}
}
