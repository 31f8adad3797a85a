package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

func cursor(u, conv string, delivered, read int64) store.CursorUpdate {
	return store.CursorUpdate{UID: u, ConvID: conv, DeliveredSeq: delivered, ReadSeq: read}
}

// testCursors: cursors only grow, stop at last_seq, exist only for users
// in the conversation, and show in the conversation list as unread counts.
func testCursors(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	conv := ids.P2P(a, b)
	for i := range 5 {
		appendOK(t, s, p2pItem(a, b, fmt.Sprint(i), "x"))
	}
	id := uid("team")
	gconv := "g:" + id
	createGroup(t, s, id, a, b)
	appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "1"}, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "2"})

	ups := []store.CursorUpdate{
		cursor(b, conv, 4, 2),
		cursor(a, conv, 9, 9),                // cut to last_seq
		cursor(c, conv, 3, 3),                // not in the conversation
		cursor(b, ids.P2P(b, c), 1, 1),       // no message yet
		cursor(b, gconv, 1, 1),               // group member
		cursor(c, gconv, 2, 2),               // not a member
		cursor(b, conv, 3, 3),                // merged with the first: (4, 3)
		cursor("bad uid", conv, 1, 1),        // ignored
		cursor(a, "nonsense", 1, 1),          // ignored
		cursor(b, "g:"+uid("nogroup"), 1, 1), // ignored
	}
	got, err := s.UpdateCursors(ctx, ups)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.CursorUpdate{
		cursor(b, conv, 4, 3), cursor(a, conv, 5, 5), cursor(c, conv, 0, 0), cursor(b, ids.P2P(b, c), 0, 0),
		cursor(b, gconv, 1, 1), cursor(c, gconv, 0, 0), cursor(b, conv, 4, 3), cursor("bad uid", conv, 0, 0),
		cursor(a, "nonsense", 0, 0), cursor(b, ups[9].ConvID, 0, 0),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cursors:\n got %+v\nwant %+v", got, want)
	}
	// Lower values change nothing.
	got, err = s.UpdateCursors(ctx, []store.CursorUpdate{cursor(b, conv, 1, 5), cursor(b, conv, 0, 0)})
	if err != nil || got[0] != cursor(b, conv, 4, 5) || got[1] != cursor(b, conv, 4, 5) {
		t.Fatalf("second update: %+v %v", got, err)
	}
	if _, err := s.UpdateCursors(ctx, []store.CursorUpdate{cursor(b, conv, -1, 0)}); err == nil {
		t.Fatal("a negative cursor was accepted")
	} else {
		wantCode(t, err, errcode.BadField)
	}
	if got, err := s.UpdateCursors(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no updates: %+v %v", got, err)
	}

	// The list shows them, with unread counts.
	appendOK(t, s, p2pItem(a, b, "late", "x")) // seq 6
	list, err := s.ListConversations(ctx, b, 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("b's list: %+v %v", list, err)
	}
	for _, cv := range list {
		switch cv.ConvID {
		case conv:
			if cv.ReadSeq != 5 || cv.DeliveredSeq != 4 || cv.LastSeq != 6 || cv.Unread != 1 {
				t.Fatalf("b's p2p entry: %+v", cv)
			}
		case gconv:
			if cv.ReadSeq != 1 || cv.DeliveredSeq != 1 || cv.LastSeq != 2 || cv.Unread != 1 || cv.Name != "name of "+id {
				t.Fatalf("b's group entry: %+v", cv)
			}
		default:
			t.Fatalf("b's list holds %+v", cv)
		}
	}
}

// testGroupRejoinKeepsCursors: a member removed from a group and added
// back has the cursors they had (what they read stays read, and what they
// marked while out did not move them), also when removals and adds of the
// same user run concurrently; while out, the group is not in their lists.
func testGroupRejoinKeepsCursors(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b := uid("alice"), uid("bob")
	id := uid("team")
	gconv := "g:" + id
	createGroup(t, s, id, a, b)
	for i := range 3 {
		appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: fmt.Sprint(i)})
	}
	if got, err := s.UpdateCursors(ctx, []store.CursorUpdate{cursor(b, gconv, 3, 2)}); err != nil || got[0] != cursor(b, gconv, 3, 2) {
		t.Fatalf("update: %+v %v", got, err)
	}
	// entry returns b's list entry of the group (ok false if not listed).
	entry := func() (store.Conversation, bool) {
		t.Helper()
		list, err := s.ListConversations(ctx, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, cv := range list {
			if cv.ConvID == gconv {
				return cv, true
			}
		}
		return store.Conversation{}, false
	}
	if _, _, err := s.RemoveGroupMembers(ctx, id, []string{b}); err != nil {
		t.Fatal(err)
	}
	// Out of the group: not listed, not among b's groups.
	if cv, ok := entry(); ok {
		t.Fatalf("a removed member's list shows the group: %+v", cv)
	}
	if gs, err := s.ListUserGroups(ctx, b); err != nil || len(gs) != 0 {
		t.Fatalf("a removed member's groups: %+v %v", gs, err)
	}
	appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "while out"}) // seq 4
	// Out of the group, b's cursors do not move (answered with zeros, as
	// for a conversation b has no row of), while a member's in the same
	// call do.
	got, err := s.UpdateCursors(ctx, []store.CursorUpdate{cursor(b, gconv, 4, 4), cursor(a, gconv, 4, 4)})
	if err != nil || got[0] != cursor(b, gconv, 0, 0) || got[1] != cursor(a, gconv, 4, 4) {
		t.Fatalf("cursor updates of a removed member and a member: %+v %v", got, err)
	}
	if _, _, err := s.AddGroupMembers(ctx, id, []string{b}, 0); err != nil {
		t.Fatal(err)
	}
	// Back: the cursors are those b left with; only seq 4 is unread...
	if cv, ok := entry(); !ok || cv.DeliveredSeq != 3 || cv.ReadSeq != 2 || cv.LastSeq != 4 || cv.Unread != 2 {
		t.Fatalf("after leaving and rejoining (left with delivered 3, read 2; last_seq 4): %+v %v", cv, ok)
	}
	// ...and they grow from there.
	if got, err := s.UpdateCursors(ctx, []store.CursorUpdate{cursor(b, gconv, 9, 4)}); err != nil || got[0] != cursor(b, gconv, 4, 4) {
		t.Fatalf("update after rejoining: %+v %v", got, err)
	}

	// Removals racing with adds: whenever b ends up a member, b's row is
	// there with its cursors.
	for round := range 10 {
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, _, err := s.RemoveGroupMembers(ctx, id, []string{b}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, _, err := s.AddGroupMembers(ctx, id, []string{b}, 0); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		in, err := s.MembersAmong(ctx, id, []string{b})
		if err != nil {
			t.Fatal(err)
		}
		cv, ok := entry()
		if len(in) == 1 && (!ok || cv.ReadSeq != 4 || cv.DeliveredSeq != 4) {
			t.Fatalf("round %d: member with list entry %+v %v, want read and delivered 4", round, cv, ok)
		}
		if len(in) == 0 && ok {
			t.Fatalf("round %d: a removed member's list shows the group: %+v", round, cv)
		}
	}
}

// testRecall: a sender takes back a message within the window; the
// message stays with its seq but without its body, and the recall is a
// message of its own pointing at it.
func testRecall(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	now := time.Now().UnixMilli()
	old := p2pItem(a, b, "old", "old body")
	old.CreatedAtMs = now - 60_000
	wantSeqs(t, appendOK(t, s, old, p2pItem(a, b, "m2", "second"), p2pItem(b, a, "m3", "bob's")), 1, 2, 3)
	recall := func(from, to, cmid string, seq, window int64) store.AppendItem {
		it := p2pItem(from, to, cmid, "")
		it.RecallSeq, it.RecallWindowMs, it.CreatedAtMs = seq, window, now
		return it
	}
	res := appendOK(t, s,
		recall(a, b, "r1", 2, 10_000),  // ok: seq 4
		recall(a, b, "r2", 3, 10_000),  // bob's message
		recall(a, b, "r3", 1, 10_000),  // too old
		recall(a, b, "r4", 2, 10_000),  // recalled already (just now)
		recall(a, b, "r5", 99, 10_000), // no such message
		recall(a, b, "r6", 4, 10_000),  // a recall event
		recall(a, b, "r1", 2, 10_000),  // retransmission of r1 in the same batch
	)
	wantRes := []struct {
		seq  int64
		dup  bool
		code errcode.Code
	}{{4, false, 0}, {0, false, errcode.Forbidden}, {0, false, errcode.Forbidden}, {0, false, errcode.BadField},
		{0, false, errcode.BadField}, {0, false, errcode.BadField}, {4, true, 0}}
	for i, w := range wantRes {
		if r := res[i]; r.Seq != w.seq || r.Duplicate != w.dup || errcode.Code(r.ErrorCode) != w.code {
			t.Fatalf("recall %d: %+v, want %+v", i, r, w)
		}
	}
	// A retransmission later is a duplicate, not "recalled already".
	res = appendOK(t, s, recall(a, b, "r1", 2, 10_000), recall(a, b, "r7", 1, 120_000))
	if !res[0].Duplicate || res[0].Seq != 4 || res[1].Seq != 5 {
		t.Fatalf("later: %+v", res)
	}
	got := syncAll(t, s, conv)
	if len(got.Messages) != 5 {
		t.Fatalf("sync: %+v", got)
	}
	m := got.Messages
	if !m[0].Recalled || m[0].Body != "" || !m[1].Recalled || m[1].Body != "" || m[2].Recalled || m[2].Body != "bob's" {
		t.Fatalf("recalled messages: %+v", m[:3])
	}
	if m[3].RefSeq != 2 || m[3].ContentType != protocol.ContentTypeRecall || m[3].Sender != a || m[3].Recalled || m[4].RefSeq != 1 {
		t.Fatalf("recall events: %+v", m[3:])
	}
	// Recall content types are for recalls only, and the fields are checked.
	bad := p2pItem(a, b, "fake", "")
	bad.ContentType = protocol.ContentTypeRecall
	neg := recall(a, b, "neg", -1, 0)
	win := recall(a, b, "win", 3, -5)
	res = appendOK(t, s, bad, neg, win)
	for i, r := range res {
		if r.ErrorCode != int32(errcode.BadField) {
			t.Fatalf("malformed recall %d: %+v", i, r)
		}
	}
	if _, ok, err := s.GetMessage(ctx, conv, a, "m2"); err != nil || !ok {
		t.Fatalf("GetMessage: %v %v", ok, err)
	}

	// In a group, a member recalls their own message; a removed member
	// no longer can.
	id := uid("team")
	gconv := "g:" + id
	createGroup(t, s, id, a, b)
	item := func(from, cmid string) store.AppendItem {
		return store.AppendItem{ConvID: gconv, Sender: from, ClientMsgID: cmid, Body: "hello", CreatedAtMs: now}
	}
	appendOK(t, s, item(a, "1"), item(b, "1"))
	grecall := func(from, cmid string, seq int64) store.AppendItem {
		it := item(from, cmid)
		it.RecallSeq, it.RecallWindowMs, it.Body = seq, 10_000, ""
		return it
	}
	res = appendOK(t, s, grecall(b, "r1", 1), grecall(a, "r1", 1))
	if res[0].ErrorCode != int32(errcode.Forbidden) || res[1].Seq != 3 {
		t.Fatalf("group recalls: %+v", res)
	}
	if _, _, err := s.RemoveGroupMembers(ctx, id, []string{b}); err != nil {
		t.Fatal(err)
	}
	res = appendOK(t, s, grecall(b, "r2", 2))
	if res[0].ErrorCode != int32(errcode.Forbidden) {
		t.Fatalf("a removed member's recall: %+v", res)
	}
}

// testCmidReusedForAnotherKind: a cmid names one message of a sender in a
// conversation. A recall under the cmid of a message (or a message under
// the cmid of a recall, or a recall of another seq under a recall's cmid)
// is not a retransmission: it is refused as a bad field instead of
// getting the original's ack, which would tell the client that a recall
// happened when none did. Stored before or earlier in the same batch.
func testCmidReusedForAnotherKind(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	now := time.Now().UnixMilli()
	recall := func(cmid string, seq int64) store.AppendItem {
		it := p2pItem(a, b, cmid, "")
		it.RecallSeq, it.RecallWindowMs, it.CreatedAtMs = seq, 60_000, now
		return it
	}
	msg := func(cmid, body string) store.AppendItem {
		it := p2pItem(a, b, cmid, body)
		it.CreatedAtMs = now
		return it
	}
	wantSeqs(t, appendOK(t, s, msg("x", "first"), msg("y", "second"), recall("r", 2)), 1, 2, 3)
	res := appendOK(t, s,
		recall("x", 1),    // the cmid of message 1
		msg("r", "again"), // the cmid of the recall
		recall("r", 1),    // the recall's cmid, another seq
		recall("y", 2),    // message 2's cmid; message 2 is recalled already anyway
		msg("x", "first"), // a true retransmission
		recall("r", 2),    // and another
		msg("z", "third"), // new: seq 4
		recall("z", 4),    // the cmid of message 4, numbered earlier in this batch
	)
	want := []struct {
		seq  int64
		dup  bool
		code errcode.Code
	}{{0, false, errcode.BadField}, {0, false, errcode.BadField}, {0, false, errcode.BadField}, {0, false, errcode.BadField},
		{1, true, 0}, {3, true, 0}, {4, false, 0}, {0, false, errcode.BadField}}
	for i, w := range want {
		if r := res[i]; r.Seq != w.seq || r.Duplicate != w.dup || errcode.Code(r.ErrorCode) != w.code {
			t.Fatalf("item %d: %+v, want %+v", i, r, w)
		}
	}
	m := syncAll(t, s, conv).Messages
	if len(m) != 4 || m[0].Recalled || m[0].Body != "first" || !m[1].Recalled || m[3].Recalled || m[3].Body != "third" {
		t.Fatalf("messages after the refused items: %+v", m)
	}
}

// testOperatorRecall: the operator (moderation) recalls any sender's
// message at any age, in a group too after the sender left it or the
// group was dissolved; the event keeps its reason and leaves the sender's
// cursors alone.
func testOperatorRecall(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	now := time.Now().UnixMilli()
	old := p2pItem(a, b, "m1", "bad words")
	old.CreatedAtMs = now - 24*3600*1000
	wantSeqs(t, appendOK(t, s, old, p2pItem(b, a, "m2", "reply")), 1, 2)
	op := func(from, to, cmid string, seq int64) store.AppendItem {
		it := p2pItem(from, to, cmid, "spam")
		it.ContentType, it.RecallSeq, it.ByOperator, it.CreatedAtMs = protocol.ContentTypeRecall, seq, true, now
		return it
	}
	res := appendOK(t, s,
		op(a, b, "gochat.recall:1", 1), // a day old, not the operator's own: ok, seq 3
		op(a, b, "gochat.recall:2", 2), // names alice, but bob sent it
		op(a, b, "gochat.recall:1", 1), // the same call again: a duplicate
	)
	if res[0].Seq != 3 || res[1].ErrorCode != int32(errcode.BadField) || !res[2].Duplicate || res[2].Seq != 3 {
		t.Fatalf("operator recalls: %+v", res)
	}
	m := syncAll(t, s, conv).Messages
	if len(m) != 3 || !m[0].Recalled || m[0].Body != "" || m[1].Recalled || m[2].RefSeq != 1 || m[2].Body != "spam" || m[2].Sender != a {
		t.Fatalf("sync: %+v", m)
	}
	// Alice wrote seq 1 and has not read bob's reply: the recall made in
	// her name does not mark it read.
	list, err := s.ListConversations(ctx, a, 0)
	if err != nil || len(list) != 1 || list[0].ReadSeq != 1 || list[0].DeliveredSeq != 1 || list[0].Unread != 2 {
		t.Fatalf("alice's conversation after the operator recall: %+v %v", list, err)
	}
	// A message its sender recalled first; only recalls can be the
	// operator's, and only under the id GoChat keeps for them.
	wantSeqs(t, appendOK(t, s, p2pItem(a, b, "m4", "oops")), 4)
	own := p2pItem(a, b, "r4", "")
	own.RecallSeq, own.RecallWindowMs, own.CreatedAtMs = 4, 60_000, now
	wantSeqs(t, appendOK(t, s, own), 5)
	notRecall := p2pItem(a, b, "x", "x")
	notRecall.ByOperator = true
	res = appendOK(t, s, op(a, b, "gochat.recall:4", 4), notRecall, op(a, b, "gochat.recall:9", 2), op(a, b, "other", 2))
	for i, r := range res {
		if r.ErrorCode != int32(errcode.BadField) {
			t.Fatalf("refused operator recall %d: %+v", i, r)
		}
	}
	if n := len(syncAll(t, s, conv).Messages); n != 5 {
		t.Fatalf("%d messages after refused operator recalls", n)
	}

	// A group message of a member removed since.
	id := uid("mod")
	gconv := "g:" + id
	createGroup(t, s, id, a, b)
	appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: b, ClientMsgID: "g1", Body: "bad", CreatedAtMs: now})
	if _, _, err := s.RemoveGroupMembers(ctx, id, []string{b}); err != nil {
		t.Fatal(err)
	}
	gop := store.AppendItem{ConvID: gconv, Sender: b, ClientMsgID: "gochat.recall:1", ContentType: protocol.ContentTypeRecall,
		RecallSeq: 1, ByOperator: true, Body: "spam", CreatedAtMs: now}
	if res := appendOK(t, s, gop); res[0].Seq != 2 {
		t.Fatalf("operator recall in a group: %+v", res)
	}
	if g := syncAll(t, s, gconv).Messages; len(g) != 2 || !g[0].Recalled || g[1].RefSeq != 1 {
		t.Fatalf("group sync: %+v", g)
	}

	// A dissolved group keeps its history readable, so the operator can
	// still recall there; nothing else is taken.
	appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "g3", Body: "worse", CreatedAtMs: now}) // seq 3
	appendOK(t, s, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "g4", Body: "mine", CreatedAtMs: now})  // seq 4
	if err := s.DissolveGroup(ctx, id, now); err != nil {
		t.Fatal(err)
	}
	gop.ClientMsgID, gop.RecallSeq, gop.Sender = "gochat.recall:3", 3, a
	selfRecall := store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "r4", ContentType: protocol.ContentTypeRecall,
		RecallSeq: 4, RecallWindowMs: 60_000, CreatedAtMs: now}
	res = appendOK(t, s, gop, selfRecall, store.AppendItem{ConvID: gconv, Sender: a, ClientMsgID: "g5", Body: "late", CreatedAtMs: now})
	if res[0].Seq != 5 || res[1].ErrorCode != int32(errcode.ConvNotFound) || res[2].ErrorCode != int32(errcode.ConvNotFound) {
		t.Fatalf("operator recall, own recall and send in a dissolved group: %+v", res)
	}
	if g := syncAll(t, s, gconv).Messages; len(g) != 5 || !g[2].Recalled || g[3].Recalled || g[4].RefSeq != 3 || g[4].Body != "spam" {
		t.Fatalf("dissolved group sync: %+v", g)
	}
}

// testRecallInBatch: a message and its recall in one call; calls that
// recall the same message concurrently: exactly one wins.
func testRecallInBatch(t *testing.T, open Factory) {
	s := handle(t, open)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	recall := func(cmid string, seq int64) store.AppendItem {
		it := p2pItem(a, b, cmid, "")
		it.RecallSeq, it.RecallWindowMs = seq, 60_000
		return it
	}
	res := appendOK(t, s, p2pItem(a, b, "m1", "oops"), recall("r1", 1), recall("r2", 1), p2pItem(b, a, "m2", "what?"))
	if res[0].Seq != 1 || res[1].Seq != 2 || res[2].ErrorCode != int32(errcode.BadField) || res[3].Seq != 3 {
		t.Fatalf("batch: %+v", res)
	}
	got := syncAll(t, s, conv)
	if !got.Messages[0].Recalled || got.Messages[0].Body != "" || got.Messages[1].RefSeq != 1 || got.Messages[2].Body != "what?" {
		t.Fatalf("sync: %+v", got.Messages)
	}
	m, ok, err := s.GetMessage(ctxT(t), conv, a, "m1")
	if err != nil || !ok || !m.Recalled || m.Body != "" || m.Seq != 1 {
		t.Fatalf("GetMessage of the recalled message: %+v %v %v", m, ok, err)
	}

	for i := range 3 {
		appendOK(t, s, p2pItem(a, b, fmt.Sprint("n", i), "x"))
	}
	const callers = 8
	ctx := ctxT(t)
	results := make(chan store.AppendResult, callers)
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			r, err := s.AppendMessages(ctx, []store.AppendItem{recall(fmt.Sprint("c", i), 4)})
			if err != nil {
				errs <- err
				return
			}
			results <- r[0]
		}()
	}
	won := 0
	for range callers {
		select {
		case err := <-errs:
			t.Fatal(err)
		case r := <-results:
			switch {
			case r.ErrorCode == 0:
				won++
			case r.ErrorCode != int32(errcode.BadField):
				t.Fatalf("concurrent recall: %+v", r)
			}
		}
	}
	if won != 1 {
		t.Fatalf("%d recalls of one message stored", won)
	}
}

// testGetMessage: a message is found by its sender's client message id,
// with every field.
func testGetMessage(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b := uid("alice"), uid("bob")
	conv := ids.P2P(a, b)
	it := p2pItem(a, b, "x1", "body")
	it.CreatedAtMs = 1234
	appendOK(t, s, p2pItem(b, a, "x1", "b's"), it)
	m, ok, err := s.GetMessage(ctx, conv, a, "x1")
	want := store.Message{ConvID: conv, Seq: 2, Sender: a, Recipient: b, ClientMsgID: "x1", ContentType: "text/plain", Body: "body", CreatedAtMs: 1234}
	if err != nil || !ok || m != want {
		t.Fatalf("GetMessage: %+v %v %v, want %+v", m, ok, err, want)
	}
	if _, ok, err := s.GetMessage(ctx, conv, a, "x2"); err != nil || ok {
		t.Fatalf("a message never sent: %v %v", ok, err)
	}
	if _, ok, err := s.GetMessage(ctx, ids.P2P(a, uid("c")), a, "x1"); err != nil || ok {
		t.Fatalf("an unknown conversation: %v %v", ok, err)
	}
	_, _, err = s.GetMessage(ctx, "nonsense", a, "x1")
	wantCode(t, err, errcode.BadField)
	_, _, err = s.GetMessage(ctx, conv, a, "")
	wantCode(t, err, errcode.BadField)
}
