package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/task/internal/backoff"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testTopic = "tasks"

// fakeStore records stored positions per partition.
type fakeStore struct {
	mu     sync.Mutex
	stored map[int32][]int64
}

func (s *fakeStore) store(topic string, id int32, next int64) error {
	if topic != testTopic {
		return fmt.Errorf("unexpected topic %q", topic)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stored[id] = append(s.stored[id], next)
	return nil
}

func (s *fakeStore) get(id int32) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.stored[id]...)
}

// fakeDead is a dead-letter producer. It fails the first failFirst writes;
// when hold is set, acknowledgements wait until release is called.
type fakeDead struct {
	mu        sync.Mutex
	failFirst int
	hold      bool
	held      []func()
	written   []kafkax.Msg
}

func (f *fakeDead) Produce(topic string, key, value []byte, cb kafkax.Callback) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failFirst > 0 {
		f.failFirst--
		return errors.New("broker unavailable")
	}
	f.written = append(f.written, kafkax.Msg{Topic: topic, Key: key, Value: value})
	ack := func() { cb(nil) }
	if f.hold {
		f.held = append(f.held, ack)
	} else {
		go ack() // like librdkafka: on another goroutine
	}
	return nil
}

func (f *fakeDead) release() {
	f.mu.Lock()
	held := f.held
	f.held = nil
	f.mu.Unlock()
	for _, ack := range held {
		ack()
	}
}

func (f *fakeDead) records() []kafkax.Msg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]kafkax.Msg(nil), f.written...)
}

type harness struct {
	d     *Dispatcher
	store *fakeStore
	dead  *fakeDead
	m     *metrics.Metrics
}

func newHarness(t *testing.T, maxAttempts int, base time.Duration, h job.Handler) *harness {
	t.Helper()
	return newHarnessConfig(t, DispatcherConfig{
		Workers: 4, MaxAttempts: maxAttempts, DeadTopic: "dead",
		Backoff: backoff.Policy{Base: base, Max: 4 * base},
	}, h)
}

func newHarnessConfig(t *testing.T, cfg DispatcherConfig, h job.Handler) *harness {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := job.NewRegistry()
	if err := reg.Register(events.TaskKind_OFFLINE_PUSH, h); err != nil {
		t.Fatal(err)
	}
	hs := &harness{store: &fakeStore{stored: map[int32][]int64{}}, dead: &fakeDead{}, m: m}
	hs.d, err = NewDispatcher(cfg, reg, hs.dead, hs.store.store, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hs.d.AbandonAll()
		hs.d.Close()
	})
	hs.d.Assign(testTopic, 0)
	return hs
}

func pushTask(uid string) []byte {
	return kafkax.Encode(&events.TaskRecord{Kind: events.TaskKind_OFFLINE_PUSH,
		OfflinePush: &events.OfflinePush{Uid: uid, ConvId: "p:a:" + uid, Seq: 1}})
}

func (h *harness) submit(t *testing.T, part int32, offset int64, value []byte) {
	t.Helper()
	if !h.d.Submit(testTopic, part, offset, []byte(fmt.Sprintf("key-%d", offset)), value) {
		t.Fatalf("submit %d/%d refused", part, offset)
	}
}

// eventually waits for cond; the timeout only guards against a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func count(c *prometheus.CounterVec, kind string) int {
	return int(testutil.ToFloat64(c.WithLabelValues(kind)))
}

func lastStored(s *fakeStore, id int32) int64 {
	st := s.get(id)
	if len(st) == 0 {
		return -1
	}
	return st[len(st)-1]
}

func TestDispatcherOutOfOrderCompletion(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, 3, time.Millisecond, job.HandlerFunc(func(ctx context.Context, rec *events.TaskRecord) error {
		if rec.OfflinePush.Uid == "slow" {
			<-gate
		}
		return nil
	}))
	h.submit(t, 0, 0, pushTask("slow"))
	for off := int64(1); off <= 4; off++ {
		h.submit(t, 0, off, pushTask(fmt.Sprint("u", off)))
	}
	eventually(t, "the fast tasks", func() bool { return count(h.m.Processed, "offline_push") == 4 })
	if st := h.store.get(0); len(st) != 0 {
		t.Fatalf("stored %v while offset 0 is still running", st)
	}
	if h.d.Inflight() != 1 {
		t.Fatalf("in flight %d, want 1", h.d.Inflight())
	}
	close(gate)
	eventually(t, "offset 5 stored", func() bool { return lastStored(h.store, 0) == 5 })
	eventually(t, "nothing in flight", func() bool { return h.d.Inflight() == 0 })
	if st := h.store.get(0); len(st) != 1 {
		t.Fatalf("stores %v, want exactly one", st)
	}
}

func TestDispatcherRetryThenSuccess(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	h := newHarness(t, 5, time.Millisecond, job.HandlerFunc(func(context.Context, *events.TaskRecord) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			return errors.New("503")
		}
		return nil
	}))
	h.submit(t, 0, 10, pushTask("u"))
	eventually(t, "offset 11 stored", func() bool { return lastStored(h.store, 0) == 11 })
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 || count(h.m.Retried, "offline_push") != 2 || count(h.m.Processed, "offline_push") != 1 {
		t.Fatalf("calls %d retried %d processed %d", calls, count(h.m.Retried, "offline_push"), count(h.m.Processed, "offline_push"))
	}
	if len(h.dead.records()) != 0 {
		t.Fatal("dead-lettered a task that succeeded")
	}
}

// A failing task is retried while later tasks of its partition finish; it
// ends in the dead-letter topic with its attempts, and only then is the
// offset stored.
func TestDispatcherDeadLetterAfterMaxAttempts(t *testing.T) {
	h := newHarness(t, 3, time.Millisecond, job.HandlerFunc(func(_ context.Context, rec *events.TaskRecord) error {
		if rec.OfflinePush.Uid == "bad" {
			return errors.New("webhook answered 500")
		}
		return nil
	}))
	h.dead.hold = true
	h.submit(t, 0, 0, pushTask("bad"))
	h.submit(t, 0, 1, pushTask("good"))
	eventually(t, "dead-letter write", func() bool { return len(h.dead.records()) == 1 })
	if count(h.m.Processed, "offline_push") != 1 {
		t.Fatal("the good task did not finish while the bad one retried")
	}
	if st := h.store.get(0); len(st) != 0 {
		t.Fatalf("stored %v before the dead-letter write was acknowledged", st)
	}
	h.dead.release()
	eventually(t, "offset 2 stored", func() bool { return lastStored(h.store, 0) == 2 })

	rec := h.dead.records()[0]
	if rec.Topic != "dead" || string(rec.Key) != "key-0" {
		t.Fatalf("dead-letter record topic %q key %q", rec.Topic, rec.Key)
	}
	var got events.TaskRecord
	if err := kafkax.Decode(rec.Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 3 || !strings.Contains(got.LastError, "500") || got.OfflinePush.GetUid() != "bad" {
		t.Fatalf("dead-letter record %+v", &got)
	}
	if count(h.m.DeadLettered, "offline_push") != 1 || count(h.m.Retried, "offline_push") != 2 {
		t.Fatalf("dead %d retried %d", count(h.m.DeadLettered, "offline_push"), count(h.m.Retried, "offline_push"))
	}
}

func TestDispatcherPermanentAndUnknown(t *testing.T) {
	h := newHarness(t, 5, time.Millisecond, job.HandlerFunc(func(context.Context, *events.TaskRecord) error {
		return job.Permanent(errors.New("webhook answered 400"))
	}))
	h.submit(t, 0, 0, pushTask("u"))
	h.submit(t, 0, 1, kafkax.Encode(&events.TaskRecord{Kind: events.TaskKind(99)}))
	garbage := []byte{0xff, 0x01, 0x02}
	h.submit(t, 0, 2, garbage)
	eventually(t, "offset 3 stored", func() bool { return lastStored(h.store, 0) == 3 })

	recs := h.dead.records()
	if len(recs) != 3 {
		t.Fatalf("%d dead-letter records, want 3", len(recs))
	}
	byKey := map[string][]byte{}
	for _, r := range recs {
		byKey[string(r.Key)] = r.Value
	}
	var perm, unknown events.TaskRecord
	if err := kafkax.Decode(byKey["key-0"], &perm); err != nil || perm.Attempts != 1 || !strings.Contains(perm.LastError, "400") {
		t.Fatalf("permanent failure record %+v (%v)", &perm, err)
	}
	if err := kafkax.Decode(byKey["key-1"], &unknown); err != nil || unknown.Attempts != 0 || !strings.Contains(unknown.LastError, "no job") {
		t.Fatalf("unknown kind record %+v (%v)", &unknown, err)
	}
	if string(byKey["key-2"]) != string(garbage) {
		t.Fatalf("undecodable record changed: %x", byKey["key-2"])
	}
	if count(h.m.Retried, "offline_push") != 0 || count(h.m.DeadLettered, job.UnknownKind) != 2 {
		t.Fatal("permanent failure retried, or unknown records not counted as unknown")
	}
}

func TestDispatcherSkipped(t *testing.T) {
	h := newHarness(t, 5, time.Millisecond, job.HandlerFunc(func(context.Context, *events.TaskRecord) error {
		return fmt.Errorf("no webhook: %w", job.ErrSkipped)
	}))
	h.submit(t, 0, 0, pushTask("u"))
	eventually(t, "offset 1 stored", func() bool { return lastStored(h.store, 0) == 1 })
	if count(h.m.Skipped, "offline_push") != 1 || count(h.m.Processed, "offline_push") != 0 {
		t.Fatal("skipped task not counted as skipped")
	}
}

func TestDispatcherDeadLetterWriteRetried(t *testing.T) {
	h := newHarness(t, 1, time.Millisecond, job.HandlerFunc(func(context.Context, *events.TaskRecord) error {
		return errors.New("down")
	}))
	h.dead.failFirst = 2
	h.submit(t, 0, 0, pushTask("u"))
	eventually(t, "offset 1 stored", func() bool { return lastStored(h.store, 0) == 1 })
	if n := int(testutil.ToFloat64(h.m.DeadErrors)); n != 2 || len(h.dead.records()) != 1 {
		t.Fatalf("dead-letter errors %d, records %d", n, len(h.dead.records()))
	}
}

// A dead-letter write that keeps failing is retried without end: after
// StuckAfter failures the task counts as stuck (Stuck, the gauge) but keeps
// its in-flight slot and holds its partition's offset; once a write
// succeeds the offset moves past it and it is no longer stuck.
func TestDispatcherDeadLetterStuck(t *testing.T) {
	h := newHarnessConfig(t, DispatcherConfig{
		Workers: 2, MaxAttempts: 1, DeadTopic: "dead", StuckAfter: 3,
		Backoff: backoff.Policy{Base: time.Millisecond, Max: 4 * time.Millisecond},
	}, job.HandlerFunc(func(_ context.Context, rec *events.TaskRecord) error {
		if rec.OfflinePush.Uid == "bad" {
			return errors.New("webhook answered 500")
		}
		return nil
	}))
	h.dead.mu.Lock()
	h.dead.failFirst = 1 << 30
	h.dead.mu.Unlock()
	h.submit(t, 0, 0, pushTask("bad"))
	h.submit(t, 0, 1, pushTask("good"))
	eventually(t, "the task stuck", func() bool { return h.d.Stuck() == 1 })
	if g := testutil.ToFloat64(h.m.DeadStuck); g != 1 {
		t.Fatalf("dead_letter_stuck %v, want 1", g)
	}
	// Still retried, not dropped.
	eventually(t, "more failed writes", func() bool { return testutil.ToFloat64(h.m.DeadErrors) >= 6 })
	if h.d.Inflight() != 1 || h.d.Stuck() != 1 || len(h.store.get(0)) != 0 || count(h.m.Abandoned, "offline_push") != 0 {
		t.Fatalf("in flight %d, stuck %d, stored %v, abandoned %d: want the task kept and no offset stored",
			h.d.Inflight(), h.d.Stuck(), h.store.get(0), count(h.m.Abandoned, "offline_push"))
	}

	h.dead.mu.Lock()
	h.dead.failFirst = 0
	h.dead.mu.Unlock()
	eventually(t, "offset 2 stored", func() bool { return lastStored(h.store, 0) == 2 })
	if h.d.Stuck() != 0 || testutil.ToFloat64(h.m.DeadStuck) != 0 || h.d.Inflight() != 0 {
		t.Fatalf("after the write: stuck %d, gauge %v, in flight %d", h.d.Stuck(), testutil.ToFloat64(h.m.DeadStuck), h.d.Inflight())
	}
	if n := len(h.dead.records()); n != 1 {
		t.Fatalf("%d dead-letter records, want 1", n)
	}
}

// A stuck task whose partition is revoked is abandoned (the next owner
// redoes it) and no longer counts as stuck.
func TestDispatcherStuckTaskRevoked(t *testing.T) {
	h := newHarnessConfig(t, DispatcherConfig{
		Workers: 2, MaxAttempts: 1, DeadTopic: "dead", StuckAfter: 2,
		Backoff: backoff.Policy{Base: time.Millisecond, Max: 2 * time.Millisecond},
	}, job.HandlerFunc(func(context.Context, *events.TaskRecord) error { return errors.New("down") }))
	h.dead.mu.Lock()
	h.dead.failFirst = 1 << 30
	h.dead.mu.Unlock()
	h.submit(t, 0, 0, pushTask("bad"))
	eventually(t, "the task stuck", func() bool { return h.d.Stuck() == 1 })
	h.d.Revoke(testTopic, 0)
	eventually(t, "the task abandoned", func() bool { return h.d.Inflight() == 0 })
	if h.d.Stuck() != 0 || testutil.ToFloat64(h.m.DeadStuck) != 0 || count(h.m.Abandoned, "offline_push") != 1 {
		t.Fatalf("stuck %d, gauge %v, abandoned %d", h.d.Stuck(), testutil.ToFloat64(h.m.DeadStuck), count(h.m.Abandoned, "offline_push"))
	}
}

// A backoff base of zero or less would retry in a tight loop: refused.
func TestDispatcherRefusesNoBackoff(t *testing.T) {
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []backoff.Policy{{}, {Base: -time.Second, Max: time.Second}, {Base: time.Second, Max: -time.Second}} {
		d, err := NewDispatcher(DispatcherConfig{Workers: 1, MaxAttempts: 1, DeadTopic: "dead", Backoff: p},
			job.NewRegistry(), &fakeDead{}, (&fakeStore{}).store, m, nil)
		if err == nil {
			d.Close()
			t.Errorf("backoff %+v accepted", p)
		}
	}
}

// Revoking a partition abandons its tasks: one waiting for a retry, one in
// the middle of an attempt. Nothing of it is stored afterwards, and the same
// partition assigned again starts clean.
func TestDispatcherRevokeAbandons(t *testing.T) {
	running := make(chan struct{}, 1)
	var mu sync.Mutex
	fail := true
	h := newHarness(t, 5, time.Hour, job.HandlerFunc(func(ctx context.Context, rec *events.TaskRecord) error {
		mu.Lock()
		f := fail
		mu.Unlock()
		if !f {
			return nil
		}
		if rec.OfflinePush.Uid == "block" {
			running <- struct{}{}
			<-ctx.Done() // like an HTTP call cut by the revocation
			return ctx.Err()
		}
		return errors.New("retry me")
	}))
	h.submit(t, 0, 0, pushTask("sleeper"))
	h.submit(t, 0, 1, pushTask("block"))
	eventually(t, "a retry scheduled", func() bool { return count(h.m.Retried, "offline_push") == 1 })
	<-running

	h.d.Revoke(testTopic, 0)
	eventually(t, "both abandoned", func() bool { return h.d.Inflight() == 0 })
	if count(h.m.Abandoned, "offline_push") != 2 {
		t.Fatalf("abandoned %d, want 2", count(h.m.Abandoned, "offline_push"))
	}
	if h.d.Submit(testTopic, 0, 2, nil, pushTask("x")) {
		t.Fatal("submit to a revoked partition accepted")
	}
	if st := h.store.get(0); len(st) != 0 {
		t.Fatalf("stored %v for a revoked partition", st)
	}

	// Assigned again (to this consumer): consumption restarts from the
	// committed offset, 0, with a fresh tracker.
	mu.Lock()
	fail = false
	mu.Unlock()
	h.d.Assign(testTopic, 0)
	h.submit(t, 0, 0, pushTask("sleeper"))
	h.submit(t, 0, 1, pushTask("block"))
	eventually(t, "offset 2 stored", func() bool { return lastStored(h.store, 0) == 2 })
}

// Many tasks over several partitions with random failures: every partition
// ends with its position past its last record, and every task is counted
// exactly once as processed or dead-lettered.
func TestDispatcherManyPartitions(t *testing.T) {
	var mu sync.Mutex
	tries := map[string]int{}
	h := newHarness(t, 3, time.Millisecond, job.HandlerFunc(func(_ context.Context, rec *events.TaskRecord) error {
		mu.Lock()
		defer mu.Unlock()
		uid := rec.OfflinePush.Uid
		tries[uid]++
		var n int
		fmt.Sscanf(uid, "u%d", &n)
		switch {
		case n%7 == 0:
			return errors.New("always fails")
		case n%3 == 0 && tries[uid] < 2:
			return errors.New("fails once")
		}
		return nil
	}))
	const parts, perPart = 4, 50
	for p := int32(1); p < parts; p++ {
		h.d.Assign(testTopic, p)
	}
	n := 0
	for off := int64(0); off < perPart; off++ {
		for p := int32(0); p < parts; p++ {
			h.submit(t, p, off*2, pushTask(fmt.Sprint("u", n))) // even offsets: gaps
			n++
		}
	}
	eventually(t, "all partitions stored to the end", func() bool {
		for p := int32(0); p < parts; p++ {
			if lastStored(h.store, p) != 2*(perPart-1)+1 {
				return false
			}
		}
		return true
	})
	done := count(h.m.Processed, "offline_push") + count(h.m.DeadLettered, "offline_push")
	if done != n || h.d.Inflight() != 0 {
		t.Fatalf("finished %d of %d, in flight %d", done, n, h.d.Inflight())
	}
	for p := int32(0); p < parts; p++ {
		st := h.store.get(p)
		for i := 1; i < len(st); i++ {
			if st[i] <= st[i-1] {
				t.Fatalf("partition %d stored positions went back: %v", p, st)
			}
		}
	}
}

// Each job kind has workers of its own: with every offline-push worker
// held by a webhook that hangs, archive tasks still run at once.
func TestDispatcherKindsDoNotWaitForEachOther(t *testing.T) {
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	defer close(gate)
	reg := job.NewRegistry()
	if err := reg.Register(events.TaskKind_OFFLINE_PUSH, job.HandlerFunc(func(ctx context.Context, _ *events.TaskRecord) error {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(events.TaskKind_ARCHIVE, job.HandlerFunc(func(context.Context, *events.TaskRecord) error { return nil })); err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{stored: map[int32][]int64{}}
	d, err := NewDispatcher(DispatcherConfig{Workers: 2, MaxAttempts: 1, DeadTopic: "dead",
		Backoff: backoff.Policy{Base: time.Millisecond}}, reg, &fakeDead{}, store.store, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.AbandonAll(); d.Close() }()
	d.Assign(testTopic, 0)
	d.Assign(testTopic, 1)
	// Ten pushes, more than the push workers, then ten archive tasks
	// behind them.
	for off := range int64(10) {
		d.Submit(testTopic, 0, off, nil, pushTask(fmt.Sprint("u", off)))
	}
	archive := kafkax.Encode(&events.TaskRecord{Kind: events.TaskKind_ARCHIVE, Archive: &common.Message{ConvId: "p:a:b", Seq: 1}})
	for off := range int64(10) {
		d.Submit(testTopic, 1, off, nil, archive)
	}
	eventually(t, "the archive tasks behind the stuck pushes", func() bool { return count(m.Processed, "archive") == 10 })
	if n := count(m.Processed, "offline_push"); n != 0 {
		t.Fatalf("%d pushes done while their webhook hangs", n)
	}
	if got := lastStored(store, 1); got != 10 {
		t.Fatalf("archive partition stored %d, want 10", got)
	}
}
