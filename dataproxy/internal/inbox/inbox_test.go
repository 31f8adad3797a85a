package inbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/redistest"
	"github.com/gochat-im/gochat/dataproxy/internal/repair"
)

// truth is a Source over maps, counting its reads; during, if set, runs
// once inside the next UserConversations read, as a concurrent change
// would.
type truth struct {
	mu      sync.Mutex
	convs   map[string][]string
	last    map[string]int64
	reads   int
	seqRead int
	during  func()
	// seqDelay makes every LastSeqs read take this long.
	seqDelay time.Duration
}

func newTruth() *truth { return &truth{convs: map[string][]string{}, last: map[string]int64{}} }

func (s *truth) UserConversations(_ context.Context, uids []string) (map[string][]string, error) {
	s.mu.Lock()
	s.reads++
	out := map[string][]string{}
	for _, u := range uids {
		out[u] = slices.Clone(s.convs[u])
	}
	during := s.during
	s.during = nil
	s.mu.Unlock()
	if during != nil {
		during()
	}
	return out, nil
}

func (s *truth) LastSeqs(_ context.Context, convs []string) (map[string]int64, error) {
	s.mu.Lock()
	if d := s.seqDelay; d > 0 {
		s.mu.Unlock()
		time.Sleep(d)
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	s.seqRead++
	out := map[string]int64{}
	for _, c := range convs {
		if v, ok := s.last[c]; ok {
			out[c] = v
		}
	}
	return out, nil
}

// append records a committed message in the truth and tells the inbox, as
// the handler does.
func (s *truth) append(t *testing.T, b *Inbox, conv string, users ...string) int64 {
	t.Helper()
	s.mu.Lock()
	s.last[conv]++
	seq := s.last[conv]
	var pairs []Pair
	for _, u := range users {
		if !slices.Contains(s.convs[u], conv) {
			s.convs[u] = append(s.convs[u], conv)
		}
		pairs = append(pairs, Pair{u, conv})
	}
	s.mu.Unlock()
	if err := b.Appended(context.Background(), map[string]int64{conv: seq}, pairs); err != nil {
		t.Fatal(err)
	}
	return seq
}

// expected computes the cursors from the truth.
func (s *truth) expected(uids ...string) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for _, u := range uids {
		out[u] = 0
		for _, c := range s.convs[u] {
			out[u] += s.last[c]
		}
	}
	return out
}

// realRedis is a client of the real Redis under a key prefix of the test's
// own (see redistest.Client).
func realRedis(t testing.TB) (*redis.Client, string) { return redistest.Client(t) }

var backends = []struct {
	name string
	open func(t *testing.T) (*redis.Client, string, func())
}{
	{"redis", func(t *testing.T) (*redis.Client, string, func()) {
		rdb, prefix := realRedis(t)
		return rdb, prefix, func() { deletePrefix(t, rdb, prefix) }
	}},
	{"miniredis", func(t *testing.T) (*redis.Client, string, func()) {
		m := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb, "", m.FlushAll
	}},
}

func deletePrefix(t *testing.T, rdb *redis.Client, prefix string) {
	if err := redistest.DeletePrefix(context.Background(), rdb, prefix); err != nil {
		t.Fatal(err)
	}
}

func wantCursors(t *testing.T, b *Inbox, s *truth, uids ...string) {
	t.Helper()
	got, err := b.Cursors(context.Background(), uids)
	if err != nil {
		t.Fatal(err)
	}
	if want := s.expected(uids...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cursors %v, want %v", got, want)
	}
}

func TestInbox(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Run("Cursors", func(t *testing.T) { testCursors(t, be.open) })
			t.Run("FillOvertaken", func(t *testing.T) { testFillOvertaken(t, be.open) })
			t.Run("OutOfOrder", func(t *testing.T) { testOutOfOrder(t, be.open) })
		})
	}
}

// Cursors follow appends, cost one script when cached, are rebuilt from
// SQL after the keys are lost, and give the same answers.
func testCursors(t *testing.T, open func(t *testing.T) (*redis.Client, string, func())) {
	rdb, prefix, flush := open(t)
	s := newTruth()
	b, err := New(Config{Prefix: prefix}, rdb, s)
	if err != nil {
		t.Fatal(err)
	}
	users := []string{"alice", "bob", "carol", "dave", "nobody", "bad uid"}
	wantCursors(t, b, s, users...) // all zero; sets filled (empty)
	for i := range 5 {
		s.append(t, b, "p:alice:bob", "alice", "bob")
		if i%2 == 0 {
			s.append(t, b, "p:alice:carol", "alice", "carol")
		}
	}
	s.mu.Lock()
	s.convs["dave"] = []string{"g:team"}
	s.convs["alice"] = append(s.convs["alice"], "g:team")
	s.mu.Unlock()
	if err := b.Forget(context.Background(), []string{"dave", "alice"}); err != nil {
		t.Fatal(err)
	}
	s.append(t, b, "g:team")
	s.append(t, b, "g:team")
	wantCursors(t, b, s, users...)
	reads, seqReads := s.reads, s.seqRead
	wantCursors(t, b, s, users...)
	if s.reads != reads || s.seqRead != seqReads {
		t.Fatal("cached cursors read SQL")
	}
	if got, _ := b.Cursors(context.Background(), []string{"alice"}); got["alice"] != 5+3+2 {
		t.Fatalf("alice's cursor %d", got["alice"])
	}
	flush()
	wantCursors(t, b, s, users...)
	// A conversation whose key is gone is read alone.
	if err := rdb.Del(context.Background(), b.SeqKey("p:alice:bob")).Err(); err != nil {
		t.Fatal(err)
	}
	reads = s.reads
	wantCursors(t, b, s, users...)
	if s.reads != reads {
		t.Fatal("a missing seq key made the sets be read again")
	}
	if ttl, _ := rdb.PTTL(context.Background(), b.SeqKey("p:alice:bob")).Result(); ttl <= 0 || ttl > DefaultSeqTTL {
		t.Fatalf("seq TTL %v", ttl)
	}
	if ttl, _ := rdb.PTTL(context.Background(), b.SetKey("alice")).Result(); ttl <= 0 || ttl > DefaultSetTTL {
		t.Fatalf("set TTL %v", ttl)
	}
}

// A new conversation committed while a user's set is being filled from an
// older read is not lost: the fill does not store the old answer.
func testFillOvertaken(t *testing.T, open func(t *testing.T) (*redis.Client, string, func())) {
	rdb, prefix, _ := open(t)
	s := newTruth()
	b, err := New(Config{Prefix: prefix}, rdb, s)
	if err != nil {
		t.Fatal(err)
	}
	s.append(t, b, "p:erin:fay", "erin", "fay")
	s.during = func() { s.append(t, b, "p:erin:gus", "erin", "gus") }
	got, err := b.Cursors(context.Background(), []string{"erin"})
	if err != nil {
		t.Fatal(err)
	}
	if got["erin"] != 1 {
		t.Fatalf("cursor during the change %d, want the answer read (1)", got["erin"])
	}
	if ex, _ := rdb.Exists(context.Background(), b.SetKey("erin")).Result(); ex != 0 {
		t.Fatal("an overtaken fill stored its answer")
	}
	wantCursors(t, b, s, "erin", "fay", "gus")
}

// Appends of one conversation reported out of order leave the highest seq.
func testOutOfOrder(t *testing.T, open func(t *testing.T) (*redis.Client, string, func())) {
	rdb, prefix, _ := open(t)
	s := newTruth()
	b, err := New(Config{Prefix: prefix, KnownSize: -1}, rdb, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.convs["hal"] = []string{"p:hal:ida"}
	s.last["p:hal:ida"] = 7
	for _, seq := range []int64{5, 7, 6} {
		if err := b.Appended(ctx, map[string]int64{"p:hal:ida": seq}, []Pair{{"hal", "p:hal:ida"}}); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := rdb.ZScore(ctx, b.SeqKey("p:hal:ida"), seqMember).Result(); v != 7 {
		t.Fatalf("seq key %v, want 7", v)
	}
	wantCursors(t, b, s, "hal")
}

// withRepair returns an Inbox over rdb and a fresh truth, with a repair
// queue of the given interval; rdb and the queue are closed when the test
// ends (the queue first).
func withRepair(t *testing.T, rdb *redis.Client, interval time.Duration) (*Inbox, *truth, *repair.Queue) {
	t.Helper()
	t.Cleanup(func() { _ = rdb.Close() })
	q, err := repair.New(repair.Config{Interval: interval}, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	s := newTruth()
	b, err := New(Config{Repair: q}, rdb, s)
	if err != nil {
		t.Fatal(err)
	}
	return b, s, q
}

// With Redis unreachable, Appended queues its keys for deletion and the
// queue deletes them once Redis is back, so a stale value cannot stay.
func TestAppendedRepair(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	b, s, q := withRepair(t, rdb, 20*time.Millisecond)
	ctx := context.Background()
	s.append(t, b, "p:a:b", "a", "b")
	wantCursors(t, b, s, "a", "b")
	m.Close()
	s.last["p:a:b"]++
	if err := b.Appended(ctx, map[string]int64{"p:a:b": 2}, []Pair{{"a", "p:a:b"}}); err == nil {
		t.Fatal("Appended without Redis succeeded")
	}
	if q.Pending() == 0 {
		t.Fatal("nothing queued for repair")
	}
	// Redis comes back with its old data (a network cut, not a restart).
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still queued", q.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantCursors(t, b, s, "a", "b")
}

// Redis down: Cursors fails (the caller answers without a cursor), it
// never guesses.
func TestCursorsRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: dead, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	b, err := New(Config{}, rdb, newTruth())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cursors(context.Background(), []string{"a"}); err == nil {
		t.Fatal("Cursors without Redis succeeded")
	}
}

// holdHook blocks the first pipeline until release is closed and counts
// pipelines.
type holdHook struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	pipelines        int
}

func (h *holdHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *holdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *holdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.pipelines++
		h.mu.Unlock()
		h.once.Do(func() {
			close(h.entered)
			<-h.release
		})
		return next(ctx, cmds)
	}
}

// Appended calls made while an update is being written are merged into
// the next one: one more round trip for all of them, with the highest seq
// of each conversation and every pair.
func TestAppendedMerges(t *testing.T) {
	rdb, prefix := realRedis(t)
	b, err := New(Config{Prefix: prefix}, rdb, newTruth())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Load the scripts (the first run of a script costs a second round
	// trip), then count.
	if err := b.Appended(ctx, map[string]int64{"c0": 1}, []Pair{{UID: "u", Conv: "c0"}}); err != nil {
		t.Fatal(err)
	}
	h := &holdHook{entered: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(h)
	errs := make(chan error, 10)
	go func() { errs <- b.Appended(ctx, map[string]int64{"c1": 1}, nil) }()
	<-h.entered
	// Nine calls behind the held write: each is queued (merged) when Queue
	// returns, and waits in a goroutine of its own.
	for i := range 9 {
		conv := fmt.Sprintf("c%d", 1+i%3)
		wait := b.Queue(map[string]int64{conv: int64(10 + i)}, []Pair{{UID: fmt.Sprint("u", i), Conv: conv}})
		go func() { errs <- wait(ctx) }()
	}
	// A call whose time runs out first says its update is still queued;
	// the update is written with the others.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := b.Appended(short, map[string]int64{"c4": 40}, nil); !errors.Is(err, ErrPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("late call: %v, want ErrPending", err)
	}
	close(h.release)
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if h.pipelines != 2 {
		t.Fatalf("%d round trips for 10 calls, want 2", h.pipelines)
	}
	for conv, want := range map[string]float64{"c1": 16, "c2": 17, "c3": 18, "c4": 40} {
		if got, err := rdb.ZScore(ctx, b.SeqKey(conv), seqMember).Result(); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", conv, got, err, want)
		}
	}
	for i := range 9 {
		if !b.known.Has(Pair{UID: fmt.Sprint("u", i), Conv: fmt.Sprintf("c%d", 1+i%3)}) {
			t.Errorf("pair %d not recorded as added", i)
		}
	}
}

// Cursors waits for the updates Appended has queued in this process, so a
// caller that did not wait for its Appended (the handler answers first)
// still reads its own appends.
func TestCursorsSettlesQueuedUpdates(t *testing.T) {
	rdb, prefix := realRedis(t)
	src := newTruth()
	b, err := New(Config{Prefix: prefix}, rdb, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Appended(ctx, map[string]int64{"c0": 1}, []Pair{{UID: "u", Conv: "c0"}}); err != nil {
		t.Fatal(err) // loads the scripts
	}
	// SQL says 5 (as if it had been read before the last commit); the
	// queued update says 7.
	src.mu.Lock()
	src.convs["alice"], src.last["c1"] = []string{"c1"}, 5
	src.mu.Unlock()
	h := &holdHook{entered: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(h)
	go func() { _ = b.Appended(ctx, map[string]int64{"c1": 7}, nil) }()
	<-h.entered
	got := make(chan map[string]int64, 1)
	go func() {
		c, err := b.Cursors(ctx, []string{"alice"})
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	select {
	case c := <-got:
		t.Fatalf("Cursors answered %v while an update was still being written", c)
	case <-time.After(50 * time.Millisecond):
	}
	close(h.release)
	if c := <-got; c["alice"] != 7 {
		t.Fatalf("alice's cursor %d, want 7 (the queued update)", c["alice"])
	}
}

// A lastseq fill whose SQL read took more than half the repair interval is
// answered but not cached: it may have read before a commit whose cache
// update failed and whose key the repair queue has deleted twice since.
func TestSlowSeqFillNotCached(t *testing.T) {
	m := miniredis.RunT(t)
	b, s, _ := withRepair(t, redis.NewClient(&redis.Options{Addr: m.Addr()}), 100*time.Millisecond)
	s.convs["a"] = []string{"p:a:b"}
	s.last["p:a:b"] = 7
	s.seqDelay = 80 * time.Millisecond // over half the interval
	wantCursors(t, b, s, "a")
	if m.Exists(b.SeqKey("p:a:b")) || b.slowFills.Load() != 1 {
		t.Fatalf("a slow read was cached (slow fills %d)", b.slowFills.Load())
	}
	s.seqDelay = 0
	wantCursors(t, b, s, "a")
	if !m.Exists(b.SeqKey("p:a:b")) || b.slowFills.Load() != 1 {
		t.Fatalf("a fast read was not cached (slow fills %d)", b.slowFills.Load())
	}
}
