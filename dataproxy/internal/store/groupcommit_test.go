package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/pkg/ids"
)

// gate makes the next append transaction of d wait until released, so that
// a test can line calls up behind it. fail, if set, then decides the fate
// of every transaction.
type gate struct {
	entered, release chan struct{}
	once             sync.Once
}

func holdWriter(d *shardDB, fail func([]*appendReq) error) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	d.testFail = func(reqs []*appendReq) error {
		g.once.Do(func() {
			close(g.entered)
			<-g.release
		})
		if fail != nil {
			return fail(reqs)
		}
		return nil
	}
	return g
}

func newTestStore(t *testing.T, cfg SQLiteConfig) *SQLStore {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "gochat.db")
	}
	cfg.Sync = "normal"
	s, err := openReady(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type call struct {
	res []AppendResult
	err error
}

// goAppend starts an append and returns where its answer will arrive.
func goAppend(ctx context.Context, s *SQLStore, items ...AppendItem) <-chan call {
	ch := make(chan call, 1)
	go func() {
		res, err := s.AppendMessages(ctx, items)
		ch <- call{res, err}
	}()
	return ch
}

func item(a, b, cmid string) AppendItem {
	return AppendItem{ConvID: ids.P2P(a, b), Sender: a, Recipient: b, ClientMsgID: cmid, Body: cmid}
}

// waitQueued waits until n calls wait in d's queue.
func waitQueued(t *testing.T, d *shardDB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(d.gc.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", len(d.gc.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Calls that queue up while a transaction runs share the next one.
func TestGroupCommitCombinesCalls(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	d := s.dbs[0]
	g := holdWriter(d, nil)
	first := goAppend(context.Background(), s, item("alice", "bob", "first"))
	<-g.entered
	const n = 19
	var waiting []<-chan call
	for i := range n {
		// Every call to its own conversation but one, which gets two.
		peer := fmt.Sprintf("peer%02d", i%(n-1))
		waiting = append(waiting, goAppend(context.Background(), s, item("alice", peer, fmt.Sprint(i))))
		// One at a time, so the queue order is i's order.
		waitQueued(t, d, i+1)
	}
	close(g.release)
	if c := <-first; c.err != nil || c.res[0].Seq != 1 {
		t.Fatalf("first call: %+v", c)
	}
	for _, ch := range waiting {
		if c := <-ch; c.err != nil {
			t.Fatal(c.err)
		}
	}
	st := s.Stats()
	if st.Commits != 2 || st.BatchedCalls != n+1 {
		t.Fatalf("%d commits carrying %d calls, want 2 carrying %d", st.Commits, st.BatchedCalls, n+1)
	}
	// The shared conversation got seqs 1 and 2 in queue order.
	got, err := s.SyncMessages(context.Background(), ids.P2P("alice", "peer00"), 0, 0)
	if err != nil || len(got.Messages) != 2 || got.Messages[0].ClientMsgID != "0" || got.Messages[1].ClientMsgID != fmt.Sprint(n-1) {
		t.Fatalf("shared conversation: %+v %v", got, err)
	}
	list, err := s.ListConversations(context.Background(), "alice", 0)
	if err != nil || len(list) != n {
		t.Fatalf("alice has %d conversations (%v), want %d", len(list), err, n)
	}
}

// When a shared transaction fails because of one call's data, the others
// are committed on their own and only that call fails.
func TestGroupCommitIsolatesBadCall(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	d := s.dbs[0]
	g := holdWriter(d, func(reqs []*appendReq) error {
		for _, r := range reqs {
			for _, it := range r.items {
				if it.ClientMsgID == "poison" {
					return &dataError{msg: "the server refused this row"}
				}
			}
		}
		return nil
	})
	first := goAppend(context.Background(), s, item("alice", "bob", "first"))
	<-g.entered
	good1 := goAppend(context.Background(), s, item("alice", "bob", "good1"))
	waitQueued(t, d, 1)
	bad := goAppend(context.Background(), s, item("alice", "bob", "bad-but-ok"), item("alice", "carol", "poison"))
	waitQueued(t, d, 2)
	good2 := goAppend(context.Background(), s, item("alice", "bob", "good2"))
	waitQueued(t, d, 3)
	close(g.release)
	for i, ch := range []<-chan call{first, good1, good2} {
		if c := <-ch; c.err != nil || c.res[0].Seq != int64(i+1) {
			t.Fatalf("good call %d: %+v", i, c)
		}
	}
	if c := <-bad; c.err == nil {
		t.Fatalf("the bad call succeeded: %+v", c.res)
	}
	if st := s.Stats(); st.Splits != 1 {
		t.Fatalf("%d splits", st.Splits)
	}
	got, err := s.SyncMessages(context.Background(), ids.P2P("alice", "bob"), 0, 0)
	if err != nil || len(got.Messages) != 3 {
		t.Fatalf("sync: %+v %v", got, err)
	}
	for _, m := range got.Messages {
		if m.ClientMsgID == "bad-but-ok" {
			t.Fatal("part of the failed call was stored")
		}
	}
	if _, err := s.SyncMessages(context.Background(), ids.P2P("alice", "carol"), 0, 0); err == nil {
		t.Fatal("the failed call's conversation exists")
	}
}

// A call whose caller gave up before its turn is not written.
func TestGroupCommitSkipsAbandonedCall(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	d := s.dbs[0]
	g := holdWriter(d, nil)
	first := goAppend(context.Background(), s, item("alice", "bob", "first"))
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	gone := goAppend(ctx, s, item("alice", "bob", "gone"))
	waitQueued(t, d, 1)
	cancel()
	if c := <-gone; !errors.Is(c.err, context.Canceled) {
		t.Fatalf("abandoned call: %+v", c)
	}
	close(g.release)
	<-first
	if r := appendOne(t, s, "alice", "bob", "next"); r.Seq != 2 {
		t.Fatalf("next call got %+v: the abandoned one was written", r)
	}
}

// Close fails the calls still waiting and refuses new ones; nothing hangs.
func TestGroupCommitClose(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	d := s.dbs[0]
	g := holdWriter(d, nil)
	first := goAppend(context.Background(), s, item("alice", "bob", "first"))
	<-g.entered
	waiting := goAppend(context.Background(), s, item("alice", "bob", "second"))
	waitQueued(t, d, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for d.gc.base.Err() == nil { // Close has begun once it cancels
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	<-first // committed or cancelled: either is fine
	if c := <-waiting; c.err == nil {
		t.Fatalf("a call queued at Close succeeded: %+v", c.res)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMessages(context.Background(), []AppendItem{item("alice", "bob", "late")}); err == nil {
		t.Fatal("append after Close succeeded")
	}
}

// A call whose messages live in two databases commits each share on its
// own: when one fails, the call fails, and its retry returns what the
// other stored as duplicates and stores the rest, never twice.
func TestAppendAcrossDatabasesRetry(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{DBs: 2})
	// Two conversations in different databases.
	var a, b string
	for i := 0; a == "" || b == ""; i++ {
		c := ids.P2P("alice", fmt.Sprint("peer", i))
		if db, _ := s.layout.Locate(c); db == 0 && a == "" {
			a = fmt.Sprint("peer", i)
		} else if db == 1 && b == "" {
			b = fmt.Sprint("peer", i)
		}
	}
	items := []AppendItem{item("alice", a, "1"), item("alice", b, "1"), item("alice", a, "2")}
	// Fail the message transaction of database 1 (not the conversation-list
	// rows it may get first).
	s.dbs[1].testFail = func(reqs []*appendReq) error {
		for _, r := range reqs {
			if len(r.items) > 0 {
				return driver.ErrBadConn
			}
		}
		return nil
	}
	if _, err := s.AppendMessages(context.Background(), items); err == nil {
		t.Fatal("a call with a failed share succeeded")
	}
	s.dbs[1].testFail = nil
	res, err := s.AppendMessages(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[0].Seq != 1 || res[1].Duplicate || res[1].Seq != 1 || !res[2].Duplicate || res[2].Seq != 2 {
		t.Fatalf("retry: %+v", res)
	}
	list, err := s.ListConversations(context.Background(), "alice", 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("alice's conversations: %+v %v", list, err)
	}
}

// On SQLite, cursor updates queued behind a transaction share the next one
// with the appends queued meanwhile: one commit for both, each caller
// answered with its own cursors, merged with the other calls' updates of
// the same list rows.
func TestCursorUpdatesShareTheAppendCommit(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	ctx := context.Background()
	for _, peer := range []string{"bob", "carol"} {
		for i := range 3 {
			if _, err := s.AppendMessages(ctx, []AppendItem{item("alice", peer, fmt.Sprint(peer, i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := s.dbs[0]
	before := s.Stats()
	g := holdWriter(d, nil)
	first := goAppend(ctx, s, item("alice", "dave", "first"))
	<-g.entered
	type answer struct {
		got []CursorUpdate
		err error
	}
	update := func(ups ...CursorUpdate) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			got, err := s.UpdateCursors(ctx, ups)
			ch <- answer{got, err}
		}()
		return ch
	}
	bob, carol := ids.P2P("alice", "bob"), ids.P2P("alice", "carol")
	u1 := update(CursorUpdate{UID: "bob", ConvID: bob, DeliveredSeq: 2, ReadSeq: 1})
	waitQueued(t, d, 1)
	u2 := update(CursorUpdate{UID: "bob", ConvID: bob, DeliveredSeq: 3}, CursorUpdate{UID: "carol", ConvID: carol, DeliveredSeq: 9, ReadSeq: 9})
	waitQueued(t, d, 2)
	app := goAppend(ctx, s, item("bob", "alice", "reply"))
	waitQueued(t, d, 3)
	close(g.release)
	if c := <-first; c.err != nil {
		t.Fatal(c.err)
	}
	if c := <-app; c.err != nil || c.res[0].Seq != 4 {
		t.Fatalf("append: %+v", c)
	}
	a1, a2 := <-u1, <-u2
	if a1.err != nil || a2.err != nil {
		t.Fatal(a1.err, a2.err)
	}
	// Both calls raised bob's row, and so did bob's reply in the same
	// transaction (a sender has read what they wrote: seq 4); each call
	// sees the merged result. carol's cursors are cut to the
	// conversation's last seq (3).
	want1 := []CursorUpdate{{UID: "bob", ConvID: bob, DeliveredSeq: 4, ReadSeq: 4}}
	want2 := []CursorUpdate{{UID: "bob", ConvID: bob, DeliveredSeq: 4, ReadSeq: 4}, {UID: "carol", ConvID: carol, DeliveredSeq: 3, ReadSeq: 3}}
	if fmt.Sprint(a1.got) != fmt.Sprint(want1) || fmt.Sprint(a2.got) != fmt.Sprint(want2) {
		t.Fatalf("answers %+v and %+v, want %+v and %+v", a1.got, a2.got, want1, want2)
	}
	st := s.Stats()
	if c := st.Commits - before.Commits; c != 2 {
		t.Fatalf("%d commits for the held append, then two cursor updates and an append; want 2", c)
	}
	list, err := s.ListConversations(ctx, "bob", 0)
	if err != nil || len(list) != 1 || list[0].DeliveredSeq != 4 || list[0].ReadSeq != 4 || list[0].Unread != 0 {
		t.Fatalf("bob's list: %+v %v", list, err)
	}
}

// collect takes whole calls until the batch holds MaxItems rows or more:
// the call that reaches the limit is taken whole (so a batch may exceed
// MaxItems), and a call larger than MaxItems is a batch of its own.
// MaxItems bounds when a batch stops growing, not its size.
func TestGroupCommitCollectTakesWholeCalls(t *testing.T) {
	req := func(items int) *appendReq { return &appendReq{items: make([]AppendItem, items)} }
	sizes := func(batch []*appendReq) (out []int) {
		for _, r := range batch {
			out = append(out, r.size())
		}
		return out
	}
	c := &committer{cfg: GroupCommit{MaxItems: 5}, queue: make(chan *appendReq, 10)}
	for _, n := range []int{3, 1, 2, 7} {
		c.queue <- req(n)
	}
	// A batch started by a call of 2 rows takes the queued 3: at 5 rows,
	// the limit, it stops.
	if got := sizes(c.collect([]*appendReq{req(2)})); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("first batch: %v, want [2 3]", got)
	}
	// 1 + 2 = 3 < 5, so the next call (7 rows) is taken whole: 10 rows.
	if got := sizes(c.collect([]*appendReq{<-c.queue})); fmt.Sprint(got) != "[1 2 7]" {
		t.Fatalf("second batch: %v, want [1 2 7] (10 rows, over MaxItems 5)", got)
	}
	// A call of more than MaxItems rows is not joined by another.
	c.queue <- req(1)
	if got := sizes(c.collect([]*appendReq{req(6)})); fmt.Sprint(got) != "[6]" {
		t.Fatalf("a large call: %v, want [6] alone", got)
	}
	// MaxItems 1: every call on its own.
	c.cfg.MaxItems = 1
	if got := sizes(c.collect([]*appendReq{<-c.queue})); fmt.Sprint(got) != "[1]" {
		t.Fatalf("MaxItems 1: %v, want [1]", got)
	}
}
