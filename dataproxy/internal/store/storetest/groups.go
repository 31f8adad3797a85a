package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// users creates the users.
func users(t *testing.T, s store.Store, uids ...string) {
	t.Helper()
	us := make([]store.User, len(uids))
	for i, u := range uids {
		us[i] = store.User{UID: u}
	}
	for lo := 0; lo < len(us); lo += 1000 {
		if _, err := s.UpsertUsers(ctxT(t), us[lo:min(lo+1000, len(us))]); err != nil {
			t.Fatalf("UpsertUsers: %v", err)
		}
	}
}

// createGroup creates the users and the group "name of <id>" with owner
// and members.
func createGroup(t *testing.T, s store.Store, id, owner string, members ...string) store.Group {
	t.Helper()
	users(t, s, append([]string{owner}, members...)...)
	g, err := s.CreateGroup(ctxT(t), store.Group{ID: id, Name: "name of " + id, Owner: owner}, members)
	if err != nil {
		t.Fatalf("CreateGroup(%s): %v", id, err)
	}
	return g
}

func memberUIDs(t *testing.T, s store.Store, id string) []string {
	t.Helper()
	var out []string
	after := ""
	for {
		page, more, err := s.ListGroupMembers(ctxT(t), id, after, 3)
		if err != nil {
			t.Fatalf("ListGroupMembers(%s): %v", id, err)
		}
		for _, m := range page {
			out = append(out, m.UID)
		}
		if !more {
			return out
		}
		after = page[len(page)-1].UID
	}
}

func groupIDs(gs []store.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}

// testGroups: the life of a group: created with its owner and members,
// members added and removed, listed page by page, dissolved.
func testGroups(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b, c, d := uid("alice"), uid("bob"), uid("carol"), uid("dave")
	id := uid("team")
	users(t, s, d)
	g := createGroup(t, s, id, a, b, c, b, a) // repeats and the owner again are ignored
	if g.ID != id || g.Owner != a || g.Name != "name of "+id || g.MemberCount != 3 || g.CreatedAtMs == 0 || g.DissolvedAtMs != 0 {
		t.Fatalf("created: %+v", g)
	}
	got, err := s.GetGroup(ctx, id)
	if err != nil || got != g {
		t.Fatalf("GetGroup: %+v %v, want %+v", got, err, g)
	}
	page, more, err := s.ListGroupMembers(ctx, id, "", 0)
	if err != nil || more || len(page) != 3 {
		t.Fatalf("members: %+v %v %v", page, more, err)
	}
	want := slices.Sorted(slices.Values([]string{a, b, c}))
	for i, m := range page {
		role := store.RoleMember
		if m.UID == a {
			role = store.RoleOwner
		}
		if m.UID != want[i] || m.Role != role || m.JoinedAtMs != g.CreatedAtMs {
			t.Fatalf("member %d: %+v", i, m)
		}
	}

	n, g2, err := s.AddGroupMembers(ctx, id, []string{d, b}, 1234)
	if err != nil || n != 1 || g2.MemberCount != 4 {
		t.Fatalf("add: %d %+v %v", n, g2, err)
	}
	if m := memberUIDs(t, s, id); fmt.Sprint(m) != fmt.Sprint(slices.Sorted(slices.Values([]string{a, b, c, d}))) {
		t.Fatalf("members after the add: %v", m)
	}
	page, _, _ = s.ListGroupMembers(ctx, id, d, 0)
	for _, m := range page {
		if m.UID <= d {
			t.Fatalf("page after %s holds %s", d, m.UID)
		}
	}
	n, g2, err = s.RemoveGroupMembers(ctx, id, []string{c, uid("stranger")})
	if err != nil || n != 1 || g2.MemberCount != 3 {
		t.Fatalf("remove: %d %+v %v", n, g2, err)
	}
	for u, wantIn := range map[string]bool{a: true, b: true, c: false, d: true} {
		gs, err := s.ListUserGroups(ctx, u)
		if err != nil || (len(gs) == 1) != wantIn || (wantIn && (gs[0].ID != id || gs[0].MemberCount != 3)) {
			t.Fatalf("%s's groups: %+v %v", u, gs, err)
		}
	}
	if in, err := s.MembersAmong(ctx, id, []string{a, c, d, "nobody"}); err != nil || fmt.Sprint(slices.Sorted(slices.Values(in))) != fmt.Sprint(slices.Sorted(slices.Values([]string{a, d}))) {
		t.Fatalf("MembersAmong: %v %v", in, err)
	}
	// Added back, removed again: the lists follow.
	if n, _, err := s.AddGroupMembers(ctx, id, []string{c}, 0); err != nil || n != 1 {
		t.Fatalf("add back: %d %v", n, err)
	}
	if gs, _ := s.ListUserGroups(ctx, c); len(gs) != 1 {
		t.Fatalf("c's groups after the add: %+v", gs)
	}

	if err := s.DissolveGroup(ctx, id, 5000); err != nil {
		t.Fatal(err)
	}
	if err := s.DissolveGroup(ctx, id, 6000); err != nil {
		t.Fatalf("dissolving twice: %v", err)
	}
	got, err = s.GetGroup(ctx, id)
	if err != nil || got.DissolvedAtMs != 5000 || got.MemberCount != 4 {
		t.Fatalf("dissolved: %+v %v", got, err)
	}
	// Members and their lists stay; changes are refused.
	if m := memberUIDs(t, s, id); len(m) != 4 {
		t.Fatalf("members of the dissolved group: %v", m)
	}
	if gs, err := s.ListUserGroups(ctx, b); err != nil || len(gs) != 1 || gs[0].DissolvedAtMs != 5000 {
		t.Fatalf("b's groups after the dissolve: %+v %v", gs, err)
	}
	_, _, err = s.AddGroupMembers(ctx, id, []string{uid("late")}, 0)
	wantCode(t, err, errcode.ConvNotFound)
	_, _, err = s.RemoveGroupMembers(ctx, id, []string{b})
	wantCode(t, err, errcode.ConvNotFound)
}

// testGroupErrors: every refusal with its code, changing nothing.
func testGroupErrors(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b := uid("alice"), uid("bob")
	id := uid("team")
	createGroup(t, s, id, a, b)
	ghost := uid("ghost")

	_, err := s.CreateGroup(ctx, store.Group{ID: id, Owner: a}, nil)
	wantCode(t, err, errcode.BadField) // exists
	for _, g := range []store.Group{{ID: "", Owner: a}, {ID: "a:b", Owner: a}, {ID: uid("x"), Owner: "bad uid"}, {ID: uid("x"), Owner: a, Name: "\xff"},
		{ID: uid("x"), Owner: a, CreatedAtMs: -1}} {
		_, err := s.CreateGroup(ctx, g, nil)
		wantCode(t, err, errcode.BadField)
	}
	other := uid("other")
	_, err = s.CreateGroup(ctx, store.Group{ID: other, Owner: a}, []string{b, ghost})
	wantCode(t, err, errcode.UserNotFound)
	if _, msg := errcode.Of(err); !strings.Contains(msg, ghost) {
		t.Fatalf("UserNotFound does not name %s: %q", ghost, msg)
	}
	_, err = s.GetGroup(ctx, other)
	wantCode(t, err, errcode.ConvNotFound) // nothing was created
	if gs, err := s.ListUserGroups(ctx, b); err != nil || len(gs) != 1 {
		t.Fatalf("b's groups after a failed create: %+v %v", gs, err)
	}
	_, err = s.CreateGroup(ctx, store.Group{ID: uid("x"), Owner: a}, []string{"bad uid"})
	wantCode(t, err, errcode.BadField)

	_, _, err = s.AddGroupMembers(ctx, id, []string{ghost}, 0)
	wantCode(t, err, errcode.UserNotFound)
	_, _, err = s.AddGroupMembers(ctx, uid("nogroup"), []string{b}, 0)
	wantCode(t, err, errcode.ConvNotFound)
	_, _, err = s.AddGroupMembers(ctx, id, []string{"bad uid"}, 0)
	wantCode(t, err, errcode.BadField)
	_, _, err = s.RemoveGroupMembers(ctx, id, []string{b, a})
	wantCode(t, err, errcode.Forbidden) // the owner
	_, _, err = s.RemoveGroupMembers(ctx, uid("nogroup"), []string{b})
	wantCode(t, err, errcode.ConvNotFound)
	if m := memberUIDs(t, s, id); len(m) != 2 {
		t.Fatalf("members after refused changes: %v", m)
	}
	err = s.DissolveGroup(ctx, uid("nogroup"), 0)
	wantCode(t, err, errcode.ConvNotFound)
	_, _, err = s.ListGroupMembers(ctx, uid("nogroup"), "", 0)
	wantCode(t, err, errcode.ConvNotFound)
	_, _, err = s.ListGroupMembers(ctx, id, "", -1)
	wantCode(t, err, errcode.BadField)
	_, _, err = s.ListGroupMembers(ctx, id, "bad uid", 0)
	wantCode(t, err, errcode.BadField)
	_, err = s.ListUserGroups(ctx, "bad uid")
	wantCode(t, err, errcode.BadField)
	many := make([]string, store.MaxGroupChange+1)
	for i := range many {
		many[i] = fmt.Sprint("u", i)
	}
	_, _, err = s.AddGroupMembers(ctx, id, many, 0)
	wantCode(t, err, errcode.BadRequest)
}

// testGroupMembershipInAppend: only members send, checked when the message
// is numbered: an outsider, a removed member and anyone after the dissolve
// are refused; a retransmission of a message sent while a member is still
// answered with its original seq.
func testGroupMembershipInAppend(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	id := uid("team")
	conv := "g:" + id
	createGroup(t, s, id, a, b)
	users(t, s, c)
	item := func(from, cmid string) store.AppendItem {
		return store.AppendItem{ConvID: conv, Sender: from, ClientMsgID: cmid, Body: cmid}
	}
	res := appendOK(t, s, item(a, "1"), item(c, "1"), item(b, "1"),
		store.AppendItem{ConvID: "g:" + uid("nogroup"), Sender: a, ClientMsgID: "x"})
	if res[0].Seq != 1 || res[1].ErrorCode != int32(errcode.Forbidden) || res[2].Seq != 2 || res[3].ErrorCode != int32(errcode.ConvNotFound) {
		t.Fatalf("first batch: %+v", res)
	}
	if _, err := s.SyncMessages(ctx, "g:"+uid("nogroup"), 0, 0); err == nil {
		t.Fatal("a message to an unknown group created its conversation")
	}
	if _, _, err := s.AddGroupMembers(ctx, id, []string{c}, 0); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, appendOK(t, s, item(c, "1")), 3)
	if _, _, err := s.RemoveGroupMembers(ctx, id, []string{b}); err != nil {
		t.Fatal(err)
	}
	res = appendOK(t, s, item(b, "2"), item(b, "1"), item(a, "2"))
	if res[0].ErrorCode != int32(errcode.Forbidden) || !res[1].Duplicate || res[1].Seq != 2 || res[2].Seq != 4 {
		t.Fatalf("after removing b: %+v", res)
	}
	if err := s.DissolveGroup(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	res = appendOK(t, s, item(a, "3"), item(a, "2"))
	if res[0].ErrorCode != int32(errcode.ConvNotFound) || !res[1].Duplicate || res[1].Seq != 4 {
		t.Fatalf("after the dissolve: %+v", res)
	}
	// The history stays readable.
	if got := syncAll(t, s, conv); got.LastSeq != 4 || len(got.Messages) != 4 {
		t.Fatalf("history: %+v", got)
	}
}

// testGroupChangesDuringAppends: members are removed and added while
// others send: every send is stored or refused as Forbidden, the seqs stay
// 1..n, and nobody outside the group at the end of the test can send.
func testGroupChangesDuringAppends(t *testing.T, open Factory) {
	s := handle(t, open)
	owner := uid("owner")
	id := uid("busy")
	conv := "g:" + id
	var churn []string
	for i := range 6 {
		churn = append(churn, uid(fmt.Sprint("m", i)))
	}
	createGroup(t, s, id, owner, churn...)
	const rounds = 15
	var wg sync.WaitGroup
	errs := make(chan error, len(churn)+2)
	stored := make([]int, len(churn)+1)
	senders := append([]string{owner}, churn...)
	for w, from := range senders {
		wg.Go(func() {
			for r := range rounds {
				res, err := s.AppendMessages(context.Background(), []store.AppendItem{{ConvID: conv, Sender: from, ClientMsgID: fmt.Sprint(r), Body: "x"}})
				if err != nil {
					errs <- err
					return
				}
				switch c := errcode.Code(res[0].ErrorCode); {
				case c == 0:
					stored[w]++
				case c == errcode.Forbidden && w > 0:
				default:
					errs <- fmt.Errorf("%s round %d: %+v", from, r, res[0])
					return
				}
			}
		})
	}
	wg.Go(func() {
		for r := range rounds {
			u := churn[r%len(churn)]
			if _, _, err := s.RemoveGroupMembers(context.Background(), id, []string{u}); err != nil {
				errs <- err
				return
			}
			if r%2 == 0 {
				if _, _, err := s.AddGroupMembers(context.Background(), id, []string{u}, 0); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if stored[0] != rounds {
		t.Fatalf("the owner stored %d of %d", stored[0], rounds)
	}
	total := 0
	for _, n := range stored {
		total += n
	}
	got := syncAll(t, s, conv)
	if got.LastSeq != int64(total) || len(got.Messages) != total {
		t.Fatalf("last_seq %d, %d messages, %d stored", got.LastSeq, len(got.Messages), total)
	}
	for i, m := range got.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	members := memberUIDs(t, s, id)
	g, err := s.GetGroup(ctxT(t), id)
	if err != nil || g.MemberCount != len(members) {
		t.Fatalf("member count %d, %d members: %v", g.MemberCount, len(members), err)
	}
	for _, u := range churn {
		gs, err := s.ListUserGroups(ctxT(t), u)
		if err != nil || (len(gs) == 1) != slices.Contains(members, u) {
			t.Fatalf("%s's groups %+v, members %v: %v", u, gs, members, err)
		}
		res := appendOK(t, s, store.AppendItem{ConvID: conv, Sender: u, ClientMsgID: "last", Body: "x"})
		if (res[0].ErrorCode == 0) != slices.Contains(members, u) {
			t.Fatalf("%s after the churn: %+v (members %v)", u, res[0], members)
		}
	}
}

// testGroupLists: a user's groups in ListUserGroups, UserGroupIDs (active
// only), UserConversations (with the one-to-one conversations) and
// ListConversations (a group shows before its first message).
func testGroupLists(t *testing.T, open Factory) {
	s := handle(t, open)
	ctx := ctxT(t)
	a, b, c := uid("alice"), uid("bob"), uid("carol")
	ids3 := []string{uid("g1"), uid("g2"), uid("g3")}
	for _, id := range ids3 {
		createGroup(t, s, id, a, b)
	}
	appendOK(t, s, p2pItem(a, c, "1", "x"))
	if err := s.DissolveGroup(ctx, ids3[1], 0); err != nil {
		t.Fatal(err)
	}
	gs, err := s.ListUserGroups(ctx, b)
	if err != nil || fmt.Sprint(groupIDs(gs)) != fmt.Sprint(slices.Sorted(slices.Values(ids3))) {
		t.Fatalf("b's groups: %+v %v", gs, err)
	}
	active, err := s.UserGroupIDs(ctx, []string{a, b, c, "bad uid"})
	if err != nil {
		t.Fatal(err)
	}
	wantActive := slices.Sorted(slices.Values([]string{ids3[0], ids3[2]}))
	if fmt.Sprint(slices.Sorted(slices.Values(active[a]))) != fmt.Sprint(wantActive) || len(active[c]) != 0 {
		t.Fatalf("active groups: %v", active)
	}
	convs, err := s.UserConversations(ctx, []string{a, c, uid("nobody")})
	if err != nil {
		t.Fatal(err)
	}
	wantA := []string{ids.P2P(a, c), "g:" + ids3[0], "g:" + ids3[1], "g:" + ids3[2]}
	if fmt.Sprint(slices.Sorted(slices.Values(convs[a]))) != fmt.Sprint(slices.Sorted(slices.Values(wantA))) ||
		fmt.Sprint(convs[c]) != fmt.Sprint([]string{ids.P2P(a, c)}) {
		t.Fatalf("conversations: %v", convs)
	}
	list, err := s.ListConversations(ctx, b, 0)
	if err != nil || len(list) != 3 {
		t.Fatalf("b's list: %+v %v", list, err)
	}
	for _, cv := range list {
		if cv.Kind != ids.KindGroup || cv.LastSeq != 0 || cv.Name != "name of "+cv.ConvID[2:] || cv.UpdatedAtMs == 0 {
			t.Fatalf("b's list entry: %+v", cv)
		}
	}
	seqs, err := s.LastSeqs(ctx, []string{ids.P2P(a, c), "g:" + ids3[0], ids.P2P(b, c), "bad"})
	if err != nil || len(seqs) != 2 || seqs[ids.P2P(a, c)] != 1 || seqs["g:"+ids3[0]] != 0 {
		t.Fatalf("LastSeqs: %v %v", seqs, err)
	}
}
