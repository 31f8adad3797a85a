package routereg

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
)

type call struct {
	kind string
	ids  []int64
}

type fakeLogic struct {
	mu    sync.Mutex
	calls []call
	fail  atomic.Int32 // number of Connect calls still to fail
	// refuse: connection ids the login policy refuses in any Connect
	// that is not a refresh.
	refuse map[int64]bool
}

func ids(infos []*logic.ConnInfo) []int64 {
	out := make([]int64, len(infos))
	for i, c := range infos {
		out[i] = c.ConnId
	}
	return out
}

func (f *fakeLogic) Connect(_ context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("logic unavailable")
	}
	f.mu.Lock()
	f.calls = append(f.calls, call{"connect", ids(req.Conns)})
	f.mu.Unlock()
	resp := &logic.ConnectResp{}
	for _, c := range req.Conns {
		// Listed only when the call says the gateway closes refused
		// connections itself (else logic sends kick records), so the test
		// below also checks that the registrar says so.
		if f.refuse[c.ConnId] && !req.Refresh && req.ClosesRefused {
			resp.Refused = append(resp.Refused, &logic.RefusedConn{ConnId: c.ConnId, Reason: "replaced", Device: "phone-new"})
		}
	}
	return resp, nil
}

func (f *fakeLogic) Disconnect(_ context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{"disconnect", ids(req.Conns)})
	f.mu.Unlock()
	return &logic.DisconnectResp{}, nil
}

func (f *fakeLogic) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

type target struct {
	id         int64
	alive      atomic.Bool
	registered atomic.Int32
	refused    atomic.Pointer[string] // "reason device"
}

func newTarget(id int64) *target {
	t := &target{id: id}
	t.alive.Store(true)
	return t
}

func (t *target) Info() *logic.ConnInfo { return &logic.ConnInfo{Uid: "u", Device: "d", ConnId: t.id} }
func (t *target) Alive() bool           { return t.alive.Load() }
func (t *target) Registered()           { t.registered.Add(1) }
func (t *target) Refused(reason, device string) {
	s := reason + " " + device
	t.refused.Store(&s)
}

func run(t *testing.T, cfg Config, l Logic, list func() []*logic.ConnInfo) *Registrar {
	t.Helper()
	cfg.GatewayID = "gw"
	r, err := New(cfg, l, list, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	t.Cleanup(func() { cancel(); <-r.Done() })
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBatchesConnects(t *testing.T) {
	f := &fakeLogic{}
	r := run(t, Config{FlushDelay: 50 * time.Millisecond, BatchMax: 4}, f, nil)
	var ts []*target
	for i := 1; i <= 10; i++ {
		tg := newTarget(int64(i))
		ts = append(ts, tg)
		r.Add(tg)
	}
	waitFor(t, "all registered", func() bool {
		for _, tg := range ts {
			if tg.registered.Load() != 1 {
				return false
			}
		}
		return true
	})
	calls := f.snapshot()
	total := 0
	for _, c := range calls {
		if c.kind != "connect" || len(c.ids) > 4 {
			t.Fatalf("call %+v", c)
		}
		total += len(c.ids)
	}
	if total != 10 || len(calls) > 4 {
		t.Fatalf("%d conns in %d calls, want 10 in at most 4", total, len(calls))
	}
}

// A connection logic's answer lists as refused is told so, with the
// reason and the device that took its place, and is not registered; the
// others of the batch are.
func TestRefusedConnects(t *testing.T) {
	f := &fakeLogic{refuse: map[int64]bool{2: true}}
	r := run(t, Config{FlushDelay: 20 * time.Millisecond}, f, nil)
	ts := []*target{newTarget(1), newTarget(2), newTarget(3)}
	for _, tg := range ts {
		r.Add(tg)
	}
	waitFor(t, "answers", func() bool {
		return ts[0].registered.Load() == 1 && ts[2].registered.Load() == 1 && ts[1].refused.Load() != nil
	})
	if got := *ts[1].refused.Load(); got != "replaced phone-new" || ts[1].registered.Load() != 0 {
		t.Fatalf("refused target: %q, registered %d times", got, ts[1].registered.Load())
	}
	if ts[0].refused.Load() != nil || ts[2].refused.Load() != nil {
		t.Fatal("an accepted connection was told it was refused")
	}
}

func TestRetriesWithoutDeadConns(t *testing.T) {
	f := &fakeLogic{}
	f.fail.Store(2)
	r := run(t, Config{FlushDelay: time.Millisecond, BackoffMin: 20 * time.Millisecond}, f, nil)
	a, b := newTarget(1), newTarget(2)
	r.Add(a)
	r.Add(b)
	time.Sleep(10 * time.Millisecond)
	b.alive.Store(false) // closed while its Connect was failing
	waitFor(t, "a registered", func() bool { return a.registered.Load() == 1 })
	if b.registered.Load() != 0 {
		t.Fatal("a closed connection was registered on retry")
	}
	for _, c := range f.snapshot() {
		for _, id := range c.ids {
			if id == 2 {
				t.Fatalf("closed conn 2 sent in %+v", c)
			}
		}
	}
}

func TestDisconnectAfterConnect(t *testing.T) {
	f := &fakeLogic{}
	r := run(t, Config{FlushDelay: time.Millisecond}, f, nil)
	a := newTarget(7)
	r.Add(a)
	r.Remove(a.Info())
	waitFor(t, "disconnect", func() bool {
		for _, c := range f.snapshot() {
			if c.kind == "disconnect" {
				return true
			}
		}
		return false
	})
	calls := f.snapshot()
	if calls[0].kind != "connect" || calls[len(calls)-1].kind != "disconnect" {
		t.Fatalf("calls out of order: %+v", calls)
	}
}

func TestRefreshResendsLiveRoutes(t *testing.T) {
	f := &fakeLogic{}
	list := func() []*logic.ConnInfo {
		return []*logic.ConnInfo{{Uid: "a", ConnId: 1}, {Uid: "b", ConnId: 2}, {Uid: "c", ConnId: 3}}
	}
	run(t, Config{Refresh: 20 * time.Millisecond, BatchMax: 2}, f, list)
	waitFor(t, "two refreshes", func() bool { return len(f.snapshot()) >= 4 })
	for _, c := range f.snapshot()[:4] {
		if c.kind != "refresh" && c.kind != "connect" {
			t.Fatalf("call %+v", c)
		}
		if len(c.ids) > 2 {
			t.Fatalf("batch of %d over BatchMax", len(c.ids))
		}
	}
}

func TestFinalDisconnectsOnStop(t *testing.T) {
	f := &fakeLogic{}
	r, err := New(Config{GatewayID: "gw", FlushDelay: time.Hour}, f, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	r.Remove(&logic.ConnInfo{ConnId: 9})
	cancel()
	<-r.Done()
	calls := f.snapshot()
	if len(calls) != 1 || calls[0].kind != "disconnect" || calls[0].ids[0] != 9 {
		t.Fatalf("calls %+v", calls)
	}
}
