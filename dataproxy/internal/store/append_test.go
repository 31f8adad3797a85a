package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/gochat-im/gochat/pkg/ids"
)

// A retransmission inside a batch that needs several INSERT statements
// (more rows than one statement takes, in two tables) is found after the
// first attempt is refused (on SQLite the transaction rolls back and runs
// again, looking every message up first) and numbered again: no gap, no
// second copy.
func TestRetransmissionInLongBatch(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{Options: Options{Tables: 2}})
	ctx := context.Background()
	// Two conversations in different tables.
	var peers []string
	seen := map[int]bool{}
	for i := 0; len(peers) < 2; i++ {
		p := fmt.Sprint("peer", i)
		if _, tb := s.layout.Locate(ids.P2P("alice", p)); !seen[tb] {
			seen[tb] = true
			peers = append(peers, p)
		}
	}
	for _, p := range peers {
		appendOne(t, s, "alice", p, "old")
	}
	var items []AppendItem
	for i := range rowsPerStmt + 50 {
		items = append(items, item("alice", peers[i%2], fmt.Sprint("new", i)))
	}
	items = append(items, item("alice", peers[1], "old"), item("alice", peers[0], "last"))
	res, err := s.AppendMessages(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DedupLookups != 1 {
		t.Fatalf("%d dedup lookups", st.DedupLookups)
	}
	n := len(items)
	if r := res[n-2]; !r.Duplicate || r.Seq != 1 {
		t.Fatalf("retransmission: %+v", r)
	}
	next := map[string]int64{peers[0]: 2, peers[1]: 2}
	for i, r := range res[:n-2] {
		p := peers[i%2]
		if r.Duplicate || r.Seq != next[p] {
			t.Fatalf("item %d: %+v, want seq %d", i, r, next[p])
		}
		next[p]++
	}
	if r := res[n-1]; r.Seq != next[peers[0]] {
		t.Fatalf("last item: %+v, want seq %d", r, next[peers[0]])
	}
	for _, p := range peers {
		got, err := s.SyncMessages(ctx, ids.P2P("alice", p), 0, MaxSyncLimit)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range got.Messages {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: message %d has seq %d", p, i, m.Seq)
			}
		}
		want := next[p] - 1
		if p == peers[0] {
			want++
		}
		if got.LastSeq != want {
			t.Fatalf("%s: last_seq %d, want %d", p, got.LastSeq, want)
		}
	}
}

// Statements are cut by size as well as by rows.
func TestInsertStatementsBySize(t *testing.T) {
	d := &shardDB{maxStmtBytes: 10_000, t: []tableSQL{newTableSQL(Layout{1, 2}, sqliteDialect, 0), newTableSQL(Layout{1, 2}, sqliteDialect, 1)}}
	var rows []msgRow
	for range 10 {
		rows = append(rows, msgRow{it: &AppendItem{Body: string(make([]byte, 2000))}})
	}
	// Each row is estimated at 4080 bytes: two per statement.
	if n := d.insertStatements([][]msgRow{rows}); n != 5 {
		t.Fatalf("%d statements, want 5", n)
	}
	one := []msgRow{{it: &AppendItem{Body: string(make([]byte, 50_000))}}}
	if n := d.insertStatements([][]msgRow{one, rows[:1]}); n != 2 {
		t.Fatalf("an oversized row: %d statements, want 2 (one each)", n)
	}
}

// On SQLite a refused INSERT rolls the whole transaction back, with what
// it wrote before the messages (a new conversation, both users' list rows);
// the second run writes them again, and the senders' cursors once.
func TestRetransmissionRedoesWholeTransaction(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	ctx := context.Background()
	appendOne(t, s, "alice", "bob", "old")
	items := []AppendItem{
		item("alice", "carol", "c1"), // a new conversation
		item("alice", "bob", "b2"),
		item("alice", "bob", "old"), // a retransmission
		item("alice", "bob", "b3"),
	}
	res, err := s.AppendMessages(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DedupLookups != 1 {
		t.Fatalf("%d dedup lookups, want 1 (the insert refused once)", st.DedupLookups)
	}
	wantResults(t, "the batch", res, []AppendResult{{Seq: 1}, {Seq: 2}, {Seq: 1, Duplicate: true}, {Seq: 3}})
	list, err := s.ListConversations(ctx, "alice", 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Conversation{}
	for _, c := range list {
		got[c.Peer] = c
	}
	if len(list) != 2 || got["carol"].LastSeq != 1 || got["bob"].LastSeq != 3 {
		t.Fatalf("alice's list: %+v", list)
	}
	if c := got["bob"]; c.ReadSeq != 3 || c.DeliveredSeq != 3 || c.Unread != 0 {
		t.Fatalf("alice's cursors in the conversation with bob: %+v", c)
	}
	carol, err := s.ListConversations(ctx, "carol", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(carol) != 1 || carol[0].Peer != "alice" || carol[0].Unread != 1 {
		t.Fatalf("carol's list: %+v", carol)
	}
	for conv, n := range map[string]int{ids.P2P("alice", "bob"): 3, ids.P2P("alice", "carol"): 1} {
		got, err := s.SyncMessages(ctx, conv, 0, MaxSyncLimit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Messages) != n {
			t.Fatalf("%s holds %d messages, want %d", conv, len(got.Messages), n)
		}
	}
}

// A retransmission inside a batch merged from several calls rolls the
// whole SQLite transaction back and it runs again: every call gets the
// answer it would get alone, with a new conversation, a recall of a message
// whose seq is only known after the retransmission is found, an
// UpdateCursors call, a group message with its membership check and a call
// that only creates a conversation in the same batch.
func TestRetransmissionRedoInMergedBatch(t *testing.T) {
	s := newTestStore(t, SQLiteConfig{})
	ctx := context.Background()
	if _, err := s.UpsertUsers(ctx, []User{{UID: "alice"}, {UID: "bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGroup(ctx, Group{ID: "team", Owner: "alice"}, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	gconv := "g:team"
	gitem := func(from, cmid string) AppendItem {
		return AppendItem{ConvID: gconv, Sender: from, ClientMsgID: cmid, Body: cmid}
	}
	appendOne(t, s, "alice", "bob", "old") // seq 1
	appendOne(t, s, "alice", "bob", "x")   // seq 2
	if r, err := s.AppendMessages(ctx, []AppendItem{gitem("alice", "g1")}); err != nil || r[0].Seq != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	base := s.Stats()

	d := s.dbs[0]
	g := holdWriter(d, nil)
	first := goAppend(ctx, s, item("alice", "zed", "first"))
	<-g.entered
	a := goAppend(ctx, s, item("alice", "bob", "old"), item("alice", "bob", "new1"))
	waitQueued(t, d, 1)
	rc := item("alice", "bob", "r1")
	rc.RecallSeq, rc.RecallWindowMs, rc.Body = 3, 1<<40, ""
	b := goAppend(ctx, s, rc, item("alice", "carol", "c1"))
	waitQueued(t, d, 2)
	cur := make(chan call, 1)
	go func() {
		_, err := s.UpdateCursors(ctx, []CursorUpdate{{UID: "bob", ConvID: ids.P2P("alice", "bob"), DeliveredSeq: 2, ReadSeq: 2}})
		cur <- call{nil, err}
	}()
	waitQueued(t, d, 3)
	gc := goAppend(ctx, s, gitem("bob", "g2"), gitem("alice", "g1"))
	waitQueued(t, d, 4)
	e := goAppend(ctx, s, item("dave", "erin", "d1"))
	waitQueued(t, d, 5)
	close(g.release)

	if c := <-first; c.err != nil || c.res[0].Seq != 1 {
		t.Fatalf("first: %+v", c)
	}
	check := func(name string, ch <-chan call, want []AppendResult) {
		t.Helper()
		c := <-ch
		if c.err != nil {
			t.Fatalf("%s: %v", name, c.err)
		}
		wantResults(t, name, c.res, want)
	}
	check("A", a, []AppendResult{{Seq: 1, Duplicate: true}, {Seq: 3}})
	check("B", b, []AppendResult{{Seq: 4}, {Seq: 1}})
	if c := <-cur; c.err != nil {
		t.Fatal(c.err)
	}
	check("group", gc, []AppendResult{{Seq: 2}, {Seq: 1, Duplicate: true}})
	check("E", e, []AppendResult{{Seq: 1}})

	st := s.Stats()
	if n := st.DedupLookups - base.DedupLookups; n != 1 {
		t.Fatalf("%d dedup lookups", n)
	}
	if n := st.Splits - base.Splits; n != 0 {
		t.Fatalf("%d splits", n)
	}
	if n := st.Commits - base.Commits; n != 2 {
		t.Fatalf("%d commits, want 2", n)
	}
	got, err := s.SyncMessages(ctx, ids.P2P("alice", "bob"), 0, MaxSyncLimit)
	if err != nil || len(got.Messages) != 4 {
		t.Fatalf("%+v %v", got, err)
	}
	if m := got.Messages[2]; m.ClientMsgID != "new1" || !m.Recalled || m.Body != "" {
		t.Fatalf("seq 3: %+v", m)
	}
	if m := got.Messages[0]; m.Recalled || m.Body != "old" {
		t.Fatalf("seq 1: %+v", m)
	}
	gm, err := s.SyncMessages(ctx, gconv, 0, MaxSyncLimit)
	if err != nil || len(gm.Messages) != 2 {
		t.Fatalf("group: %+v %v", gm, err)
	}
	for uid, want := range map[string]map[string][3]int64{ // peer -> last, read, unread
		"alice": {"bob": {4, 4, 0}, "carol": {1, 1, 0}, "zed": {1, 1, 0}},
		"bob":   {"alice": {4, 2, 2}},
		"carol": {"alice": {1, 0, 1}},
		"erin":  {"dave": {1, 0, 1}},
		"dave":  {"erin": {1, 1, 0}},
	} {
		list, err := s.ListConversations(ctx, uid, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if c.Kind != ids.KindP2P {
				continue
			}
			w, ok := want[c.Peer]
			if !ok || c.LastSeq != w[0] || c.ReadSeq != w[1] || c.Unread != w[2] {
				t.Fatalf("%s's row for %s: %+v, want %v", uid, c.Peer, c, w)
			}
			delete(want, c.Peer)
		}
		if len(want) != 0 {
			t.Fatalf("%s misses %v", uid, want)
		}
	}
}

// wantResults fails t unless res holds, item by item, the seq and duplicate
// flag of want, without errors.
func wantResults(t *testing.T, name string, res, want []AppendResult) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("%s: %d results, want %d", name, len(res), len(want))
	}
	for i, r := range res {
		if r.Seq != want[i].Seq || r.Duplicate != want[i].Duplicate || r.ErrorCode != 0 {
			t.Fatalf("%s item %d: %+v, want %+v", name, i, r, want[i])
		}
	}
}
