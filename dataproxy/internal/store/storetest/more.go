package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// testManyConversations: a hub user talks with many peers; writers append
// concurrently, each owning some conversations, some calls spanning several
// conversations (and so, in a sharded layout, several databases). Every
// conversation ends with seqs 1..n in each writer's order, and the hub's
// list holds every conversation with its last seq.
func testManyConversations(t *testing.T, open Factory) {
	s := handle(t, open)
	const convs, writers, rounds = 24, 6, 8
	hub := uid("hub")
	peers := make([]string, convs)
	for i := range peers {
		peers[i] = uid(fmt.Sprintf("peer%02d", i))
	}
	base := time.Now().UnixMilli() - 100_000
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			mine := []int{}
			for c := w; c < convs; c += writers {
				mine = append(mine, c)
			}
			for r := range rounds {
				var items []store.AppendItem
				// Round r writes to one, two or all of the writer's
				// conversations, two messages each.
				n := 1 + r%len(mine)
				for _, c := range mine[:n] {
					for k := range 2 {
						it := p2pItem(hub, peers[c], fmt.Sprintf("r%d-%d", r, k), fmt.Sprintf("%d/%d/%d", c, r, k))
						it.CreatedAtMs = base + int64(c)*1000 + int64(r)
						items = append(items, it)
					}
				}
				res, err := s.AppendMessages(context.Background(), items)
				if err != nil {
					errs <- err
					return
				}
				for i, x := range res {
					if x.ErrorCode != 0 || x.Duplicate || x.Seq == 0 {
						errs <- fmt.Errorf("writer %d round %d item %d: %+v", w, r, i, x)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]store.Conversation, 0, convs)
	for c := range convs {
		conv := ids.P2P(hub, peers[c])
		got := syncAll(t, s, conv)
		// Writer c%writers wrote to its k-th conversation in rounds r with
		// 1+r%len(mine) > k.
		w := c % writers
		mineLen := (convs - w + writers - 1) / writers
		k := c / writers
		var bodies []string
		for r := range rounds {
			if 1+r%mineLen > k {
				bodies = append(bodies, fmt.Sprintf("%d/%d/0", c, r), fmt.Sprintf("%d/%d/1", c, r))
			}
		}
		if len(got.Messages) != len(bodies) || got.LastSeq != int64(len(bodies)) {
			t.Fatalf("%s: %d messages, last_seq %d, want %d", conv, len(got.Messages), got.LastSeq, len(bodies))
		}
		for i, m := range got.Messages {
			if m.Seq != int64(i+1) || m.Body != bodies[i] {
				t.Fatalf("%s message %d: seq %d body %q, want %q", conv, i, m.Seq, m.Body, bodies[i])
			}
		}
		last := got.Messages[len(got.Messages)-1]
		// hub wrote every message, so has read them all (the append raises
		// the sender's cursors, in whichever database hub's list lives).
		want = append(want, store.Conversation{ConvID: conv, Kind: ids.KindP2P, Peer: peers[c], LastSeq: got.LastSeq, UpdatedAtMs: last.CreatedAtMs,
			ReadSeq: got.LastSeq, DeliveredSeq: got.LastSeq})
		// ... and the peer none.
		pl, err := s.ListConversations(ctxT(t), peers[c], 0)
		if err != nil || len(pl) != 1 || pl[0].Unread != got.LastSeq || pl[0].ReadSeq != 0 {
			t.Fatalf("%s's conversations: %+v %v", peers[c], pl, err)
		}
	}
	slices.SortFunc(want, func(a, b store.Conversation) int { return int(b.UpdatedAtMs - a.UpdatedAtMs) })
	list, err := s.ListConversations(ctxT(t), hub, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("hub's conversations:\n got %+v\nwant %+v", list, want)
	}
	list, err = s.ListConversations(ctxT(t), hub, 5)
	if err != nil || fmt.Sprint(list) != fmt.Sprint(want[:5]) {
		t.Fatalf("hub's first 5 conversations: %+v %v", list, err)
	}
	for c, p := range peers {
		list, err := s.ListConversations(ctxT(t), p, 0)
		if err != nil || len(list) != 1 || list[0].Peer != hub || list[0].ConvID != ids.P2P(hub, peers[c]) {
			t.Fatalf("%s's conversations: %+v %v", p, list, err)
		}
	}
}

// testConcurrentDuplicates: the same message sent by many calls at once
// (as retries racing each other) is stored once; every call gets its seq.
func testConcurrentDuplicates(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	appendOK(t, s, p2pItem(a, b, "first", "x"))
	const callers = 16
	res := make([]store.AppendResult, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			var r []store.AppendResult
			r, errs[i] = s.AppendMessages(context.Background(), []store.AppendItem{p2pItem(a, b, "same", fmt.Sprint("try", i)), p2pItem(b, a, fmt.Sprint("own", i), "y")})
			if errs[i] == nil {
				res[i] = r[0]
			}
		})
	}
	wg.Wait()
	fresh := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if res[i].Seq != res[0].Seq || res[i].CreatedAtMs != res[0].CreatedAtMs {
			t.Fatalf("caller %d got %+v, caller 0 %+v", i, res[i], res[0])
		}
		if !res[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d callers stored the message", fresh)
	}
	got := syncAll(t, s, conv)
	if got.LastSeq != 1+1+callers || len(got.Messages) != 1+1+callers {
		t.Fatalf("sync: last_seq %d, %d messages", got.LastSeq, len(got.Messages))
	}
	same := 0
	for i, m := range got.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		if m.ClientMsgID == "same" {
			same++
		}
	}
	if same != 1 {
		t.Fatalf("%d copies stored", same)
	}
}

// testGroupConversation: a group's members send to it and see it in their
// lists, with its name and no peer; others cannot send and do not see it.
func testGroupConversation(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	group := uid("team")
	conv := "g:" + group
	createGroup(t, s, group, a, b)
	users(t, s, c)
	item := func(from, cmid string) store.AppendItem {
		return store.AppendItem{ConvID: conv, Sender: from, ClientMsgID: cmid, Body: from + cmid}
	}
	wantSeqs(t, appendOK(t, s, item(a, "1"), item(b, "1"), item(a, "2")), 1, 2, 3)
	res := appendOK(t, s, item(b, "1"), item(c, "1"), item(a, "3"))
	if !res[0].Duplicate || res[0].Seq != 2 || res[1].ErrorCode != int32(errcode.Forbidden) || res[1].Seq != 0 || res[2].Seq != 4 {
		t.Fatalf("second batch: %+v", res)
	}
	for _, u := range []string{a, b} {
		list, err := s.ListConversations(ctxT(t), u, 0)
		if err != nil || len(list) != 1 || list[0].ConvID != conv || list[0].Kind != ids.KindGroup || list[0].Peer != "" || list[0].LastSeq != 4 ||
			list[0].Name != "name of "+group {
			t.Fatalf("%s's conversations: %+v %v", u, list, err)
		}
	}
	if list, err := s.ListConversations(ctxT(t), c, 0); err != nil || len(list) != 0 {
		t.Fatalf("a non-member's conversations: %+v %v", list, err)
	}
	got := syncAll(t, s, conv)
	if len(got.Messages) != 4 || got.Messages[3].Body != a+"3" || got.Messages[1].Sender != b || got.Messages[1].Recipient != "" {
		t.Fatalf("group sync: %+v", got)
	}
}

// testMixedBatch: one call mixing many conversations, duplicates within the
// call, earlier messages and invalid items; every result answers its item.
func testMixedBatch(t *testing.T, open Factory) {
	s := handle(t, open)
	a := uid("alice")
	peers := make([]string, 10)
	for i := range peers {
		peers[i] = uid(fmt.Sprint("p", i))
	}
	appendOK(t, s, p2pItem(a, peers[3], "old", "before"))
	var items []store.AppendItem
	type want struct {
		seq  int64
		dup  bool
		code errcode.Code
	}
	var wants []want
	add := func(it store.AppendItem, w want) { items = append(items, it); wants = append(wants, w) }
	for i, p := range peers {
		first := int64(1)
		if i == 3 {
			first = 2
		}
		add(p2pItem(a, p, "x", "1"), want{seq: first})
		add(p2pItem(p, a, "x", "2"), want{seq: first + 1})
		add(p2pItem(a, p, "x", "again"), want{seq: first, dup: true})
		if i == 3 {
			add(p2pItem(a, p, "old", "again"), want{seq: 1, dup: true})
		}
		if i%3 == 0 {
			bad := p2pItem(a, p, "", "no id")
			add(bad, want{code: errcode.BadField})
		}
	}
	res := appendOK(t, s, items...)
	for i, w := range wants {
		r := res[i]
		if errcode.Code(r.ErrorCode) != w.code || r.Seq != w.seq || r.Duplicate != w.dup {
			t.Fatalf("item %d (%s from %s): %+v, want %+v", i, items[i].ConvID, items[i].Sender, r, w)
		}
	}
	list, err := s.ListConversations(ctxT(t), a, 0)
	if err != nil || len(list) != len(peers) {
		t.Fatalf("alice's conversations: %d %v", len(list), err)
	}
	for i, p := range peers {
		got := syncAll(t, s, ids.P2P(a, p))
		n := 2
		if i == 3 {
			n = 3
		}
		if len(got.Messages) != n || got.LastSeq != int64(n) {
			t.Fatalf("conversation with %s: %+v", p, got)
		}
	}
}
