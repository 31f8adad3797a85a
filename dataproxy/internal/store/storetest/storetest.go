// Package storetest is the conformance suite of store.Store: the contracts
// of the package doc and of DESIGN.md section 3, checked the same way against
// every implementation and layout (SQLite and MySQL, each with one database
// and table, and sharded over several databases and tables). The tests in
// more.go spread their data over many conversations so that a sharded
// layout is exercised across databases, and run calls concurrently so that
// group commit combines them.
//
// The suite uses fresh random user and conversation ids in every subtest, so
// it can share one database with other runs; it never deletes data.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Factory opens a new handle on the same database each time it is called,
// with the schema migrated. The suite closes every handle it opens.
type Factory func(t *testing.T) store.Store

// Run runs the suite.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"SeqInOrder", testSeqInOrder},
		{"Dedup", testDedup},
		{"ItemValidation", testItemValidation},
		{"ConcurrentAppends", testConcurrentAppends},
		{"SyncPaging", testSyncPaging},
		{"UnknownConversation", testUnknownConversation},
		{"ListConversations", testListConversations},
		{"Users", testUsers},
		{"Reopen", testReopen},
		{"MigrationsIdempotent", testMigrations},
		{"ManyConversations", testManyConversations},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"GroupConversation", testGroupConversation},
		{"MixedBatch", testMixedBatch},
		{"Groups", testGroups},
		{"GroupErrors", testGroupErrors},
		{"GroupMembershipInAppend", testGroupMembershipInAppend},
		{"GroupChangesDuringAppends", testGroupChangesDuringAppends},
		{"GroupLists", testGroupLists},
		{"Cursors", testCursors},
		{"GroupRejoinKeepsCursors", testGroupRejoinKeepsCursors},
		{"Recall", testRecall},
		{"RecallInBatch", testRecallInBatch},
		{"CmidReusedForAnotherKind", testCmidReusedForAnotherKind},
		{"OperatorRecall", testOperatorRecall},
		{"GetMessage", testGetMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// handle opens a store that is closed when the test ends.
func handle(t *testing.T, open Factory) store.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uid returns a user id unique to this run.
func uid(name string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return name + "_" + hex.EncodeToString(b[:])
}

func p2pItem(from, to, cmid, body string) store.AppendItem {
	return store.AppendItem{ConvID: ids.P2P(from, to), Sender: from, Recipient: to, ClientMsgID: cmid, ContentType: "text/plain", Body: body}
}

func appendOK(t *testing.T, s store.Store, items ...store.AppendItem) []store.AppendResult {
	t.Helper()
	res, err := s.AppendMessages(ctxT(t), items)
	if err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if len(res) != len(items) {
		t.Fatalf("AppendMessages: %d results for %d items", len(res), len(items))
	}
	return res
}

func wantSeqs(t *testing.T, res []store.AppendResult, seqs ...int64) {
	t.Helper()
	for i, r := range res {
		if r.ErrorCode != 0 {
			t.Fatalf("result %d: error %d %s", i, r.ErrorCode, r.ErrorMessage)
		}
		if r.Seq != seqs[i] {
			t.Fatalf("result %d: seq %d, want %d (all: %+v)", i, r.Seq, seqs[i], res)
		}
	}
}

func syncAll(t *testing.T, s store.Store, conv string) store.SyncResult {
	t.Helper()
	var all store.SyncResult
	after := int64(0)
	for {
		page, err := s.SyncMessages(ctxT(t), conv, after, store.MaxSyncLimit)
		if err != nil {
			t.Fatalf("SyncMessages(%s, %d): %v", conv, after, err)
		}
		all.Messages = append(all.Messages, page.Messages...)
		all.LastSeq = page.LastSeq
		if !page.HasMore {
			return all
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

func wantCode(t *testing.T, err error, code errcode.Code) {
	t.Helper()
	if got, msg := errcode.Of(err); got != code {
		t.Fatalf("error %v (%d %q), want code %d", err, got, msg, code)
	}
}

func testSeqInOrder(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	res := appendOK(t, s, p2pItem(a, b, "m1", "one"), p2pItem(b, a, "m2", "two"), p2pItem(a, b, "m3", "three"))
	wantSeqs(t, res, 1, 2, 3)
	for _, r := range res {
		if r.Duplicate || r.CreatedAtMs == 0 {
			t.Fatalf("result %+v", r)
		}
	}
	at := time.Now().UnixMilli() - 5000
	bin := "\x00\xff binary \xfe"
	item := p2pItem(a, b, "m4", bin)
	item.CreatedAtMs = at
	item.ContentType = "application/octet-stream"
	res = appendOK(t, s, item)
	wantSeqs(t, res, 4)
	if res[0].CreatedAtMs != at {
		t.Fatalf("created_at_ms %d, want the item's %d", res[0].CreatedAtMs, at)
	}

	got := syncAll(t, s, conv)
	if got.LastSeq != 4 || len(got.Messages) != 4 {
		t.Fatalf("sync: last_seq %d, %d messages", got.LastSeq, len(got.Messages))
	}
	bodies := []string{"one", "two", "three", bin}
	for i, m := range got.Messages {
		if m.Seq != int64(i+1) || m.Body != bodies[i] || m.ConvID != conv {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	m := got.Messages[3]
	if m.Sender != a || m.Recipient != b || m.ClientMsgID != "m4" || m.ContentType != "application/octet-stream" || m.CreatedAtMs != at {
		t.Fatalf("message 4 fields: %+v", m)
	}
	if got.Messages[1].Sender != b || got.Messages[1].Recipient != a {
		t.Fatalf("message 2 fields: %+v", got.Messages[1])
	}
}

func testDedup(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	first := appendOK(t, s, p2pItem(a, b, "x", "hello"))
	wantSeqs(t, first, 1)

	// A retransmission, even with another body, returns the original.
	again := appendOK(t, s, p2pItem(a, b, "x", "changed"))
	if !again[0].Duplicate || again[0].Seq != 1 || again[0].CreatedAtMs != first[0].CreatedAtMs {
		t.Fatalf("retransmission: %+v, original %+v", again[0], first[0])
	}
	// Within one batch: y, y again, z; the other sender may reuse "x".
	res := appendOK(t, s, p2pItem(a, b, "y", "1"), p2pItem(a, b, "y", "2"), p2pItem(a, b, "z", "3"), p2pItem(b, a, "x", "4"), p2pItem(a, b, "x", "5"))
	want := []struct {
		seq int64
		dup bool
	}{{2, false}, {2, true}, {3, false}, {4, false}, {1, true}}
	for i, w := range want {
		if res[i].Seq != w.seq || res[i].Duplicate != w.dup || res[i].ErrorCode != 0 {
			t.Fatalf("batch result %d: %+v, want seq %d dup %v", i, res[i], w.seq, w.dup)
		}
	}
	if res[1].CreatedAtMs != res[0].CreatedAtMs {
		t.Fatalf("in-batch duplicate has created_at %d, original %d", res[1].CreatedAtMs, res[0].CreatedAtMs)
	}
	// A batch of nothing but duplicates stores nothing and keeps last_seq.
	res = appendOK(t, s, p2pItem(a, b, "z", "again"), p2pItem(a, b, "y", "again"))
	if !res[0].Duplicate || res[0].Seq != 3 || !res[1].Duplicate || res[1].Seq != 2 {
		t.Fatalf("all-duplicate batch: %+v", res)
	}
	got := syncAll(t, s, conv)
	if got.LastSeq != 4 || len(got.Messages) != 4 {
		t.Fatalf("sync: last_seq %d, %d messages", got.LastSeq, len(got.Messages))
	}
	if got.Messages[0].Body != "hello" || got.Messages[1].Body != "1" {
		t.Fatalf("a duplicate changed a stored message: %+v", got.Messages[:2])
	}
}

func testItemValidation(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	conv := ids.P2P(a, b)
	group := "g:" + uid("team")
	bad := func(mut func(*store.AppendItem)) store.AppendItem {
		it := p2pItem(a, b, uid("m"), "body")
		mut(&it)
		return it
	}
	items := []store.AppendItem{
		p2pItem(a, b, "ok1", "first"),
		bad(func(it *store.AppendItem) { it.ConvID = "nonsense" }),
		bad(func(it *store.AppendItem) { it.ConvID = "p:" + b + ":" + a }), // not in canonical order
		bad(func(it *store.AppendItem) { it.Sender = c }),
		bad(func(it *store.AppendItem) { it.Recipient = c }),
		bad(func(it *store.AppendItem) { it.Recipient = a }), // to oneself
		bad(func(it *store.AppendItem) { it.ClientMsgID = "" }),
		bad(func(it *store.AppendItem) { it.ClientMsgID = strings.Repeat("x", 65) }),
		bad(func(it *store.AppendItem) { it.ContentType = strings.Repeat("t", 65) }),
		bad(func(it *store.AppendItem) { it.Body = strings.Repeat("b", store.DefaultMaxBody+1) }),
		bad(func(it *store.AppendItem) { it.ConvID, it.Recipient = group, b }), // a group has no recipient
		bad(func(it *store.AppendItem) { it.ConvID, it.Sender, it.Recipient = group, "bad:uid", "" }),
		p2pItem(b, a, "ok2", strings.Repeat("b", store.DefaultMaxBody)),
		{ConvID: group, Sender: c, ClientMsgID: "g1", Body: "to the group"},
	}
	createGroup(t, s, group[2:], c)
	res := appendOK(t, s, items...)
	codes := []errcode.Code{0, errcode.BadField, errcode.BadField, errcode.BadField, errcode.BadField, errcode.BadField,
		errcode.BadField, errcode.BadField, errcode.BadField, errcode.TooLarge, errcode.BadField, errcode.BadField, 0, 0}
	for i, want := range codes {
		if got := errcode.Code(res[i].ErrorCode); got != want {
			t.Fatalf("item %d: code %d (%s), want %d", i, got, res[i].ErrorMessage, want)
		}
		if want != 0 && (res[i].Seq != 0 || res[i].ErrorMessage == "") {
			t.Fatalf("rejected item %d: %+v", i, res[i])
		}
	}
	if res[0].Seq != 1 || res[12].Seq != 2 || res[13].Seq != 1 {
		t.Fatalf("valid items: %+v %+v %+v", res[0], res[12], res[13])
	}
	if got := syncAll(t, s, conv); got.LastSeq != 2 || len(got.Messages) != 2 {
		t.Fatalf("sync: last_seq %d, %d messages", got.LastSeq, len(got.Messages))
	}
	if got := syncAll(t, s, group); got.LastSeq != 1 || got.Messages[0].Sender != c {
		t.Fatalf("group sync: %+v", got)
	}

	// A batch with no valid item stores nothing and is not an error.
	other := ids.P2P(a, c)
	res = appendOK(t, s, store.AppendItem{ConvID: other, Sender: a, Recipient: c})
	if res[0].ErrorCode != int32(errcode.BadField) {
		t.Fatalf("empty client_msg_id accepted: %+v", res[0])
	}
	_, err := s.SyncMessages(ctxT(t), other, 0, 0)
	wantCode(t, err, errcode.ConvNotFound)
}

func testConcurrentAppends(t *testing.T, open Factory) {
	s := handle(t, open)
	const writers, rounds = 8, 12
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	// seqs[w] are the seqs writer w got, in the order it sent.
	seqs := make([][]int64, writers)
	for w := range writers {
		wg.Go(func() {
			from, to := a, b
			if w%2 == 1 {
				from, to = b, a
			}
			for r := range rounds {
				n := 1 + r%3 // batches of 1, 2 and 3
				items := make([]store.AppendItem, n)
				for k := range items {
					items[k] = p2pItem(from, to, fmt.Sprintf("w%d-r%d-%d", w, r, k), "x")
				}
				res, err := s.AppendMessages(context.Background(), items)
				if err != nil {
					errs <- err
					return
				}
				for _, x := range res {
					if x.ErrorCode != 0 || x.Duplicate {
						errs <- fmt.Errorf("writer %d: %+v", w, x)
						return
					}
					seqs[w] = append(seqs[w], x.Seq)
				}
			}
		})
	}
	// A reader syncs meanwhile: whatever it sees must start right after
	// its cursor with no hole.
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		after := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			page, err := s.SyncMessages(context.Background(), conv, after, 7)
			if err != nil {
				if c, _ := errcode.Of(err); c == errcode.ConvNotFound {
					continue
				}
				errs <- err
				return
			}
			for _, m := range page.Messages {
				if m.Seq != after+1 {
					errs <- fmt.Errorf("reader saw seq %d after %d", m.Seq, after)
					return
				}
				after = m.Seq
			}
			if after > page.LastSeq {
				errs <- fmt.Errorf("reader at %d beyond last_seq %d", after, page.LastSeq)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	total := 0
	seen := map[int64]int{}
	for w, list := range seqs {
		total += len(list)
		for i, q := range list {
			if prev, dup := seen[q]; dup {
				t.Fatalf("seq %d given to writers %d and %d", q, prev, w)
			}
			seen[q] = w
			if i > 0 && q <= list[i-1] {
				t.Fatalf("writer %d got seq %d after %d", w, q, list[i-1])
			}
		}
	}
	for q := int64(1); q <= int64(total); q++ {
		if _, ok := seen[q]; !ok {
			t.Fatalf("seq %d missing of 1..%d", q, total)
		}
	}
	got := syncAll(t, s, conv)
	if got.LastSeq != int64(total) || len(got.Messages) != total {
		t.Fatalf("sync: last_seq %d, %d messages, want %d", got.LastSeq, len(got.Messages), total)
	}
	for i, m := range got.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
}

func testSyncPaging(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	var items []store.AppendItem
	for i := 1; i <= 7; i++ {
		items = append(items, p2pItem(a, b, fmt.Sprint("m", i), fmt.Sprint("body", i)))
	}
	appendOK(t, s, items...)
	ctx := ctxT(t)
	pages := []struct {
		after     int64
		limit     int
		from, to  int64
		more      bool
		wantCount int
	}{
		{0, 3, 1, 3, true, 3},
		{3, 3, 4, 6, true, 3},
		{6, 3, 7, 7, false, 1},
		{7, 3, 0, 0, false, 0},
		{100, 3, 0, 0, false, 0},
		{0, 0, 1, 7, false, 7},   // 0 means the default (50)
		{2, 500, 3, 7, false, 5}, // over the cap is cut to 200
	}
	for _, p := range pages {
		got, err := s.SyncMessages(ctx, conv, p.after, p.limit)
		if err != nil {
			t.Fatalf("sync after %d limit %d: %v", p.after, p.limit, err)
		}
		if got.LastSeq != 7 || got.HasMore != p.more || len(got.Messages) != p.wantCount {
			t.Fatalf("sync after %d limit %d: last %d more %v count %d", p.after, p.limit, got.LastSeq, got.HasMore, len(got.Messages))
		}
		for i, m := range got.Messages {
			if m.Seq != p.from+int64(i) || m.Body != fmt.Sprint("body", m.Seq) {
				t.Fatalf("sync after %d: message %d is %+v", p.after, i, m)
			}
		}
	}
	_, err := s.SyncMessages(ctx, conv, -1, 10)
	wantCode(t, err, errcode.BadField)
	_, err = s.SyncMessages(ctx, conv, 0, -1)
	wantCode(t, err, errcode.BadField)
}

func testUnknownConversation(t *testing.T, open Factory) {
	s := handle(t, open)
	_, err := s.SyncMessages(ctxT(t), ids.P2P(uid("nobody"), uid("noone")), 0, 10)
	wantCode(t, err, errcode.ConvNotFound)
	_, err = s.SyncMessages(ctxT(t), "g:"+uid("nogroup"), 0, 10)
	wantCode(t, err, errcode.ConvNotFound)
	_, err = s.SyncMessages(ctxT(t), "x:not-a-conv", 0, 10)
	wantCode(t, err, errcode.BadField)
}

func testListConversations(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b, c, d := uid("alice"), uid("bob"), uid("carol"), uid("dave")
	at := func(it store.AppendItem, ms int64) store.AppendItem { it.CreatedAtMs = ms; return it }
	base := time.Now().UnixMilli() - 60_000
	appendOK(t, s, at(p2pItem(a, b, "1", "x"), base+1000))
	appendOK(t, s, at(p2pItem(c, a, "1", "x"), base+3000), at(p2pItem(a, c, "2", "x"), base+3000))
	appendOK(t, s, at(p2pItem(a, d, "1", "x"), base+2000))
	appendOK(t, s, at(p2pItem(b, a, "2", "x"), base+4000), at(p2pItem(a, b, "3", "x"), base+4000), at(p2pItem(a, b, "4", "x"), base+4000))

	got, err := s.ListConversations(ctxT(t), a, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody has read anything but what they wrote (an append raises its
	// sender's cursors): alice's newest message is the last of each of her
	// conversations, so she has nothing unread.
	want := []store.Conversation{
		{ConvID: ids.P2P(a, b), Kind: ids.KindP2P, Peer: b, LastSeq: 4, UpdatedAtMs: base + 4000, ReadSeq: 4, DeliveredSeq: 4},
		{ConvID: ids.P2P(a, c), Kind: ids.KindP2P, Peer: c, LastSeq: 2, UpdatedAtMs: base + 3000, ReadSeq: 2, DeliveredSeq: 2},
		{ConvID: ids.P2P(a, d), Kind: ids.KindP2P, Peer: d, LastSeq: 1, UpdatedAtMs: base + 2000, ReadSeq: 1, DeliveredSeq: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("alice's conversations:\n got %+v\nwant %+v", got, want)
	}
	got, err = s.ListConversations(ctxT(t), a, 2)
	if err != nil || len(got) != 2 || got[1].Peer != c {
		t.Fatalf("limit 2: %+v %v", got, err)
	}
	// carol wrote seq 1, alice seq 2: one unread.
	got, err = s.ListConversations(ctxT(t), c, 0)
	if err != nil || len(got) != 1 || got[0].Peer != a || got[0].LastSeq != 2 || got[0].ReadSeq != 1 || got[0].DeliveredSeq != 1 || got[0].Unread != 1 {
		t.Fatalf("carol's conversations: %+v %v", got, err)
	}
	got, err = s.ListConversations(ctxT(t), uid("stranger"), 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("a stranger's conversations: %+v %v", got, err)
	}
	_, err = s.ListConversations(ctxT(t), "bad:uid", 0)
	wantCode(t, err, errcode.BadField)
}

func testUsers(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	n, err := s.UpsertUsers(ctx, []store.User{{UID: a, Name: "Alice Ünïcødé 🙂"}, {UID: b}, {UID: a, Name: "again"}})
	if err != nil || n != 2 {
		t.Fatalf("first upsert: %d %v", n, err)
	}
	n, err = s.UpsertUsers(ctx, []store.User{{UID: a, Name: "renamed"}, {UID: c, Name: "Carol", CreatedAtMs: 1234}})
	if err != nil || n != 1 {
		t.Fatalf("second upsert: %d %v", n, err)
	}
	got, err := s.GetUsers(ctx, []string{c, uid("ghost"), a, "bad:uid", a})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].UID != c || got[0].Name != "Carol" || got[0].CreatedAtMs != 1234 ||
		got[1].UID != a || got[1].Name != "Alice Ünïcødé 🙂" || got[1].CreatedAtMs == 0 {
		t.Fatalf("GetUsers: %+v", got)
	}
	// Case matters in ids.
	if got, err := s.GetUsers(ctx, []string{strings.ToUpper(a)}); err != nil || len(got) != 0 {
		t.Fatalf("GetUsers is case-insensitive: %+v %v", got, err)
	}
	if _, err := s.UpsertUsers(ctx, []store.User{{UID: uid("ok")}, {UID: "has space"}}); err == nil {
		t.Fatal("a malformed uid was accepted")
	} else {
		wantCode(t, err, errcode.BadField)
	}
	if _, err := s.UpsertUsers(ctx, []store.User{{UID: uid("ok"), Name: "\xff"}}); err == nil {
		t.Fatal("a name that is not UTF-8 was accepted")
	}
	if n, err := s.UpsertUsers(ctx, nil); n != 0 || err != nil {
		t.Fatalf("empty upsert: %d %v", n, err)
	}
}

func testReopen(t *testing.T, open Factory) {
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	s := open(t)
	appendOK(t, s, p2pItem(a, b, "1", "before"), p2pItem(b, a, "2", "before"))
	if _, err := s.UpsertUsers(ctxT(t), []store.User{{UID: a}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = handle(t, open)
	got := syncAll(t, s, conv)
	if got.LastSeq != 2 || len(got.Messages) != 2 || got.Messages[1].Body != "before" {
		t.Fatalf("after reopen: %+v", got)
	}
	res := appendOK(t, s, p2pItem(a, b, "3", "after"), p2pItem(a, b, "1", "dup"))
	if res[0].Seq != 3 || res[0].Duplicate || res[1].Seq != 1 || !res[1].Duplicate {
		t.Fatalf("after reopen: %+v", res)
	}
	if u, err := s.GetUsers(ctxT(t), []string{a}); err != nil || len(u) != 1 {
		t.Fatalf("user after reopen: %+v %v", u, err)
	}
}

func testMigrations(t *testing.T, open Factory) {
	// The factory migrates; doing it on two handles, one after the other
	// and once more by hand, must change nothing.
	s1 := handle(t, open)
	s2 := handle(t, open)
	for i, s := range []store.Store{s1, s2} {
		m, ok := s.(store.Migrator)
		if !ok {
			t.Fatalf("handle %d: %T does not implement store.Migrator", i, s)
		}
		if err := m.Migrate(ctxT(t)); err != nil {
			t.Fatalf("handle %d: Migrate again: %v", i, err)
		}
		cur, latest, err := m.SchemaVersion(ctxT(t))
		if err != nil || cur != latest || latest < 1 {
			t.Fatalf("handle %d: schema version %d of %d, %v", i, cur, latest, err)
		}
	}
	a, b := uid("alice"), uid("bob")
	wantSeqs(t, appendOK(t, s2, p2pItem(a, b, "1", "x")), 1)
}
