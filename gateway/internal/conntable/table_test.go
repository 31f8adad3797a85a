package conntable

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeConn struct {
	id       int64
	uid      string
	lastSeen atomic.Int64 // unix nanos
	link     Link[*fakeConn]
}

func (c *fakeConn) ConnID() int64               { return c.id }
func (c *fakeConn) UID() string                 { return c.uid }
func (c *fakeConn) TableLink() *Link[*fakeConn] { return &c.link }

func TestValidShards(t *testing.T) {
	for _, n := range []int{1, 2, 64, 256, MaxShards} {
		if err := ValidShards(n); err != nil {
			t.Errorf("%d: %v", n, err)
		}
		if _, err := New[*fakeConn](n); err != nil {
			t.Errorf("New(%d): %v", n, err)
		}
	}
	for _, n := range []int{0, -1, 3, 48, 100, MaxShards * 2} {
		if ValidShards(n) == nil {
			t.Errorf("%d accepted", n)
		}
		if _, err := New[*fakeConn](n); err == nil {
			t.Errorf("New(%d) accepted", n)
		}
	}
}

func ids(cs []*fakeConn) []int64 {
	out := make([]int64, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func TestAddRemoveLookup(t *testing.T) {
	tb, err := New[*fakeConn](8)
	if err != nil {
		t.Fatal(err)
	}
	a1 := &fakeConn{id: 1, uid: "alice"}
	a2 := &fakeConn{id: 2, uid: "alice"}
	b3 := &fakeConn{id: 3, uid: "bob"}

	tb.AddPending(a1)
	if tb.PendingLen() != 1 || tb.Len() != 0 {
		t.Fatalf("pending %d len %d", tb.PendingLen(), tb.Len())
	}
	for _, c := range []*fakeConn{a1, a2, b3} {
		if !tb.Add(c) {
			t.Fatalf("add %d failed", c.id)
		}
	}
	if tb.Add(&fakeConn{id: 1, uid: "alice"}) {
		t.Fatal("duplicate conn id accepted")
	}
	if tb.PendingLen() != 0 || tb.Len() != 3 {
		t.Fatalf("pending %d len %d", tb.PendingLen(), tb.Len())
	}
	if c, ok := tb.Get("alice", 2); !ok || c != a2 {
		t.Fatal("alice/2 not found")
	}
	// The right conn id with the wrong uid finds nothing.
	if _, ok := tb.Get("bob", 2); ok {
		t.Fatal("bob/2 found alice's connection")
	}
	if _, ok := tb.Get("alice", 3); ok {
		t.Fatal("alice/3 found bob's connection")
	}
	if got := ids(tb.ByUID("alice", nil)); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("alice has %v", got)
	}
	if !tb.Remove(a1) || tb.Remove(a1) {
		t.Fatal("remove a1 twice")
	}
	if got := ids(tb.ByUID("alice", nil)); fmt.Sprint(got) != "[2]" {
		t.Fatalf("alice has %v", got)
	}
	tb.Remove(a2)
	if got := tb.ByUID("alice", nil); len(got) != 0 {
		t.Fatalf("alice still has %v", ids(got))
	}
	if tb.Len() != 1 {
		t.Fatalf("len %d", tb.Len())
	}
	total := 0
	for i := 0; i < tb.Shards(); i++ {
		total += tb.ShardLen(i)
	}
	if total != 1 || tb.ShardLen(tb.ShardOf("bob")) != 1 {
		t.Fatal("shard counts do not add up")
	}
	if got := ids(tb.All()); fmt.Sprint(got) != "[3]" {
		t.Fatalf("All = %v", got)
	}
}

func TestShardSpread(t *testing.T) {
	tb, _ := New[*fakeConn](16)
	for i := 0; i < 16000; i++ {
		tb.Add(&fakeConn{id: int64(i), uid: fmt.Sprintf("u%d", i)})
	}
	for i := 0; i < 16; i++ {
		if n := tb.ShardLen(i); n < 700 || n > 1300 {
			t.Errorf("shard %d holds %d of 16000", i, n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tb, _ := New[*fakeConn](4)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				c := &fakeConn{id: int64(g*1000 + i), uid: fmt.Sprintf("u%d", i%7)}
				tb.AddPending(c)
				tb.Add(c)
				tb.Get(c.uid, c.id)
				tb.ByUID(c.uid, nil)
				tb.Remove(c)
			}
		}(g)
	}
	wg.Wait()
	if tb.Len() != 0 || tb.PendingLen() != 0 {
		t.Fatalf("len %d pending %d", tb.Len(), tb.PendingLen())
	}
}

func TestSweeperIdle(t *testing.T) {
	tb, _ := New[*fakeConn](4)
	base := time.Unix(1_000_000, 0)
	var now atomic.Int64
	now.Store(base.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	const idle = 90 * time.Second

	var expired []int64
	sw := NewSweeper(tb, SweepConfig[*fakeConn]{
		Now: clock,
		Due: func(c *fakeConn, now time.Time) bool {
			return now.Sub(time.Unix(0, c.lastSeen.Load())) >= idle
		},
		Expire: func(c *fakeConn, _ time.Time) {
			expired = append(expired, c.id)
			tb.Remove(c)
		},
	})
	conns := make([]*fakeConn, 10)
	for i := range conns {
		conns[i] = &fakeConn{id: int64(i), uid: fmt.Sprintf("u%d", i)}
		conns[i].lastSeen.Store(base.UnixNano())
		tb.Add(conns[i])
	}
	if n := sw.SweepAll(); n != 0 {
		t.Fatalf("%d expired at start", n)
	}
	// Half the connections send something after 60 s.
	now.Add(int64(60 * time.Second))
	for i := 0; i < 5; i++ {
		conns[i].lastSeen.Store(now.Load())
	}
	now.Add(int64(30 * time.Second)) // 90 s after start, 30 s after the activity
	if n := sw.SweepAll(); n != 5 {
		t.Fatalf("%d expired, want 5", n)
	}
	sort.Slice(expired, func(i, j int) bool { return expired[i] < expired[j] })
	if fmt.Sprint(expired) != "[5 6 7 8 9]" {
		t.Fatalf("expired %v", expired)
	}
	now.Add(int64(59 * time.Second))
	if n := sw.SweepAll(); n != 0 {
		t.Fatalf("%d expired early", n)
	}
	now.Add(int64(time.Second))
	if n := sw.SweepAll(); n != 5 || tb.Len() != 0 {
		t.Fatalf("%d expired, %d left", n, tb.Len())
	}
}

func TestSweeperRunVisitsEveryShard(t *testing.T) {
	tb, _ := New[*fakeConn](64)
	for i := 0; i < 200; i++ {
		tb.AddPending(&fakeConn{id: int64(i)})
	}
	done := make(chan struct{})
	var seen atomic.Int64
	sw := NewSweeper(tb, SweepConfig[*fakeConn]{
		Interval: 20 * time.Millisecond,
		Due:      func(*fakeConn, time.Time) bool { return true },
		Expire: func(c *fakeConn, _ time.Time) {
			tb.RemovePending(c.id)
			if seen.Add(1) == 200 {
				close(done)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sw.Run(ctx)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("sweeper expired %d of 200", seen.Load())
	}
}

// Handshaking connections are swept every pass, authenticated ones only
// every ConnInterval.
func TestSweeperConnInterval(t *testing.T) {
	tb, _ := New[*fakeConn](4)
	var pendingSeen, connSeen atomic.Int64
	for i := 0; i < 8; i++ {
		tb.AddPending(&fakeConn{id: int64(i)})
		tb.Add(&fakeConn{id: int64(100 + i), uid: fmt.Sprintf("u%d", i)})
	}
	sw := NewSweeper(tb, SweepConfig[*fakeConn]{
		Interval:     20 * time.Millisecond,
		ConnInterval: 100 * time.Millisecond,
		Due: func(c *fakeConn, _ time.Time) bool {
			if c.uid == "" {
				pendingSeen.Add(1)
			} else {
				connSeen.Add(1)
			}
			return false
		},
		Expire: func(*fakeConn, time.Time) {},
	})
	ctx, cancel := context.WithCancel(context.Background())
	go sw.Run(ctx)
	time.Sleep(500 * time.Millisecond)
	cancel()
	p, c := pendingSeen.Load()/8, connSeen.Load()/8
	if p < 5 || c < 1 || c*3 > p {
		t.Fatalf("pending checked %d times, connections %d times; want about 5 times fewer", p, c)
	}
}

// Per-shard counters: pushes that found their target, and lock waits.
func TestShardStats(t *testing.T) {
	tb, _ := New[*fakeConn](2)
	a := &fakeConn{id: 1, uid: "alice"}
	tb.Add(a)
	for i := 0; i < 3; i++ {
		if _, ok := tb.Push("alice", 1); !ok {
			t.Fatal("push target not found")
		}
	}
	tb.Push("alice", 2) // a miss is not a push
	st := tb.Stats(tb.ShardOf("alice"))
	if st.Conns != 1 || st.Pushes != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Contention: hold the shard's lock while others wait for it.
	s := &tb.shards[tb.ShardOf("alice")]
	s.mu.Lock()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); tb.Get("alice", 1) }()
	}
	time.Sleep(20 * time.Millisecond)
	s.mu.Unlock()
	wg.Wait()
	st = tb.Stats(tb.ShardOf("alice"))
	if st.Contended != 4 || st.Wait < 4*10*time.Millisecond {
		t.Fatalf("contention %d wait %v", st.Contended, st.Wait)
	}
}

// Several devices of one user: removal from the head, middle and tail of
// the user's list.
func TestManyDevices(t *testing.T) {
	tb, _ := New[*fakeConn](1)
	var cs []*fakeConn
	for i := 0; i < 5; i++ {
		c := &fakeConn{id: int64(i + 1), uid: "u"}
		cs = append(cs, c)
		if !tb.Add(c) {
			t.Fatal("add")
		}
	}
	for _, i := range []int{2, 4, 0} { // middle, head (last added), tail
		if !tb.Remove(cs[i]) {
			t.Fatalf("remove %d", i)
		}
		if _, ok := tb.Get("u", cs[i].id); ok {
			t.Fatalf("%d still found", i)
		}
	}
	if got := ids(tb.ByUID("u", nil)); fmt.Sprint(got) != "[2 4]" {
		t.Fatalf("left %v", got)
	}
	if tb.Len() != 2 || tb.Add(cs[1]) {
		t.Fatal("re-adding a present connection must fail")
	}
}

// PushBytes (user id as bytes, for targets read in place) finds the same
// connections as Push: both hashes must agree.
func TestPushBytes(t *testing.T) {
	tb, _ := New[*fakeConn](64)
	for i := 0; i < 1000; i++ {
		uid := fmt.Sprintf("user-%d", i)
		if hashBytes([]byte(uid)) != hashString(uid) {
			t.Fatalf("hashes differ for %q", uid)
		}
		tb.Add(&fakeConn{id: int64(i), uid: uid})
	}
	for i := 0; i < 1000; i++ {
		uid := []byte(fmt.Sprintf("user-%d", i))
		if c, ok := tb.PushBytes(uid, int64(i)); !ok || c.id != int64(i) {
			t.Fatalf("%s not found", uid)
		}
		if _, ok := tb.PushBytes(uid, int64(i+1)); ok {
			t.Fatalf("%s found with another conn id", uid)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { tb.PushBytes([]byte("user-7"), 7) }); allocs != 0 {
		t.Fatalf("PushBytes allocates %v times", allocs)
	}
}
