package handler_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

func mustUsers(t testing.TB, cli dpsvc.Client, uids ...string) {
	t.Helper()
	for lo := 0; lo < len(uids); lo += 1000 {
		var us []*common.User
		for _, u := range uids[lo:min(lo+1000, len(uids))] {
			us = append(us, &common.User{Uid: u})
		}
		if _, err := cli.UpsertUsers(context.Background(), &dataproxy.UpsertUsersReq{Users: us}); err != nil {
			t.Fatal(err)
		}
	}
}

func groupRoutes(t *testing.T, cli dpsvc.Client, group string) []string {
	t.Helper()
	resp, err := cli.GetGroupRoutes(context.Background(), &dataproxy.GetGroupRoutesReq{GroupId: group})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range resp.Routes {
		out = append(out, fmt.Sprintf("%s/%s@%s#%d", r.Uid, r.Device, r.GatewayId, r.ConnId))
	}
	sort.Strings(out)
	return out
}

// The group calls over Kitex: business errors with their codes, and the
// group's route set following membership.
func TestGroupsOverKitex(t *testing.T) {
	e := start(t) // MaxBatch 10
	ctx := context.Background()
	mustUsers(t, e.cli, "alice", "bob", "carol", "dave")
	routes := []*common.Route{
		{Uid: "alice", Device: "phone", GatewayId: "gw-1", ConnId: 1},
		{Uid: "bob", Device: "web", GatewayId: "gw-2", ConnId: 2},
		{Uid: "carol", Device: "phone", GatewayId: "gw-2", ConnId: 3},
	}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: routes}); err != nil {
		t.Fatal(err)
	}
	g, err := e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Name: "The Team", Owner: "alice", Members: []string{"bob"}, CreatedAtMs: 1000})
	if err != nil || g.Group.GroupId != "team" || g.Group.MemberCount != 2 || g.Group.CreatedAtMs != 1000 || g.Group.Dissolved {
		t.Fatalf("create: %+v %v", g, err)
	}
	if got := groupRoutes(t, e.cli, "team"); fmt.Sprint(got) != "[alice/phone@gw-1#1 bob/web@gw-2#2]" {
		t.Fatalf("route set after create: %v", got)
	}
	_, err = e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice"})
	wantBizCode(t, err, errcode.BadField)
	_, err = e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "x", Owner: "alice", Members: []string{"ghost"}})
	wantBizCode(t, err, errcode.UserNotFound)
	_, err = e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "x", Owner: "alice", Members: make([]string, 11)})
	wantBizCode(t, err, errcode.BadRequest)
	_, err = e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "a b", Owner: "alice"})
	wantBizCode(t, err, errcode.BadField)

	add, err := e.cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"carol", "bob"}})
	if err != nil || add.Changed != 1 || add.Group.MemberCount != 3 {
		t.Fatalf("add: %+v %v", add, err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 3 {
		t.Fatalf("route set after add: %v", got)
	}
	_, err = e.cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "nope", Uids: []string{"carol"}})
	wantBizCode(t, err, errcode.ConvNotFound)
	_, err = e.cli.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"alice"}})
	wantBizCode(t, err, errcode.Forbidden)
	rm, err := e.cli.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"bob"}})
	if err != nil || rm.Changed != 1 || rm.Group.MemberCount != 2 {
		t.Fatalf("remove: %+v %v", rm, err)
	}
	if got := groupRoutes(t, e.cli, "team"); fmt.Sprint(got) != "[alice/phone@gw-1#1 carol/phone@gw-2#3]" {
		t.Fatalf("route set after remove: %v", got)
	}
	// bob's refresh does not bring him back; carol's new device joins.
	more := []*common.Route{routes[1], {Uid: "carol", Device: "web", GatewayId: "gw-1", ConnId: 4}}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: more}); err != nil {
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); fmt.Sprint(got) != "[alice/phone@gw-1#1 carol/phone@gw-2#3 carol/web@gw-1#4]" {
		t.Fatalf("route set after refresh: %v", got)
	}
	if _, err := e.cli.DelRoutes(ctx, &dataproxy.DelRoutesReq{Routes: more[1:]}); err != nil {
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 2 {
		t.Fatalf("route set after disconnect: %v", got)
	}

	// Messages: only members; bob's list loses the group.
	resp, err := e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: "g:team", Sender: "carol", ClientMsgId: "1", Body: "hi"},
		{ConvId: "g:team", Sender: "bob", ClientMsgId: "1", Body: "hi"},
		{ConvId: "g:nope", Sender: "bob", ClientMsgId: "1", Body: "hi"},
	}})
	if err != nil || resp.Results[0].Seq != 1 || resp.Results[1].ErrorCode != int32(errcode.Forbidden) || resp.Results[2].ErrorCode != int32(errcode.ConvNotFound) {
		t.Fatalf("append: %+v %v", resp, err)
	}
	for u, want := range map[string]int{"alice": 1, "bob": 0, "carol": 1} {
		gs, err := e.cli.ListUserGroups(ctx, &dataproxy.ListUserGroupsReq{Uid: u})
		if err != nil || len(gs.Groups) != want {
			t.Fatalf("%s's groups: %+v %v", u, gs, err)
		}
		cs, err := e.cli.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: u})
		if err != nil || len(cs.Items) != want || (want == 1 && (cs.Items[0].Name != "The Team" || cs.Items[0].Kind != ids.KindGroup)) {
			t.Fatalf("%s's conversations: %+v %v", u, cs, err)
		}
	}
	ms, err := e.cli.ListGroupMembers(ctx, &dataproxy.ListGroupMembersReq{GroupId: "team", Limit: 1})
	if err != nil || len(ms.Members) != 1 || !ms.HasMore || ms.Members[0].Uid != "alice" || ms.Members[0].Role != "owner" {
		t.Fatalf("members: %+v %v", ms, err)
	}
	_, err = e.cli.ListGroupMembers(ctx, &dataproxy.ListGroupMembersReq{GroupId: "nope"})
	wantBizCode(t, err, errcode.ConvNotFound)
	_, err = e.cli.GetGroupRoutes(ctx, &dataproxy.GetGroupRoutesReq{GroupId: "a:b"})
	wantBizCode(t, err, errcode.BadField)

	// Dissolved: no routes, no messages, still readable.
	if _, err := e.cli.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "team"}); err != nil {
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 0 {
		t.Fatalf("route set after dissolve: %v", got)
	}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: routes}); err != nil {
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 0 {
		t.Fatalf("route set refilled after dissolve: %v", got)
	}
	gg, err := e.cli.GetGroup(ctx, &dataproxy.GetGroupReq{GroupId: "team"})
	if err != nil || !gg.Group.Dissolved || gg.Group.Name != "The Team" {
		t.Fatalf("dissolved group: %+v %v", gg, err)
	}
	_, err = e.cli.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: "nope"})
	wantBizCode(t, err, errcode.ConvNotFound)
	_, err = e.cli.GetGroup(ctx, &dataproxy.GetGroupReq{GroupId: "nope"})
	wantBizCode(t, err, errcode.ConvNotFound)
	resp, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{{ConvId: "g:team", Sender: "alice", ClientMsgId: "2"}}})
	if err != nil || resp.Results[0].ErrorCode != int32(errcode.ConvNotFound) {
		t.Fatalf("append to a dissolved group: %+v %v", resp, err)
	}
}

// Cursors and inbox cursors over Kitex.
func TestCursorsOverKitex(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	for i := range 3 {
		if _, err := e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
			{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: fmt.Sprint(i), Body: "x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	up, err := e.cli.UpdateCursors(ctx, &dataproxy.UpdateCursorsReq{Updates: []*dataproxy.CursorUpdate{
		{Uid: "bob", ConvId: conv, DeliveredSeq: 3, ReadSeq: 2}, {Uid: "carol", ConvId: conv, ReadSeq: 1}, nil,
	}})
	if err != nil || len(up.Cursors) != 3 || up.Cursors[0].ReadSeq != 2 || up.Cursors[0].DeliveredSeq != 3 || up.Cursors[1].ReadSeq != 0 {
		t.Fatalf("UpdateCursors: %+v %v", up, err)
	}
	_, err = e.cli.UpdateCursors(ctx, &dataproxy.UpdateCursorsReq{Updates: []*dataproxy.CursorUpdate{{Uid: "bob", ConvId: conv, ReadSeq: -1}}})
	wantBizCode(t, err, errcode.BadField)
	cs, err := e.cli.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: "bob"})
	if err != nil || cs.Items[0].Unread != 1 || cs.Items[0].ReadSeq != 2 || cs.Items[0].DeliveredSeq != 3 {
		t.Fatalf("conversations: %+v %v", cs, err)
	}
	cur, err := e.cli.GetUserCursors(ctx, &dataproxy.GetUserCursorsReq{Uids: []string{"alice", "bob", "carol"}})
	if err != nil || fmt.Sprint(cur.Cursors) != "map[alice:3 bob:3 carol:0]" {
		t.Fatalf("GetUserCursors: %+v %v", cur, err)
	}
	_, err = e.cli.GetUserCursors(ctx, &dataproxy.GetUserCursorsReq{Uids: make([]string, 11)})
	wantBizCode(t, err, errcode.BadRequest)
	got, err := e.cli.GetMessage(ctx, &dataproxy.GetMessageReq{ConvId: conv, Sender: "alice", ClientMsgId: "nope"})
	if err != nil || got.Found {
		t.Fatalf("GetMessage of nothing: %+v %v", got, err)
	}
	_, err = e.cli.GetMessage(ctx, &dataproxy.GetMessageReq{ConvId: "bad", Sender: "alice", ClientMsgId: "1"})
	wantBizCode(t, err, errcode.BadField)
}

// Redis loses everything (FLUSHALL and its scripts) while users chat in
// groups and one to one: the inbox cursors come back from SQL with the same
// values, and the group route sets come back with the gateways' next
// refresh, with the same routes.
func TestRedisFlushCursorsAndGroupRoutes(t *testing.T) {
	m, rdb, cli := flushableEnv(t)
	ctx := context.Background()
	var uids []string
	var rs []*common.Route
	for i := range 12 {
		u := fmt.Sprint("user", i)
		uids = append(uids, u)
		rs = append(rs, &common.Route{Uid: u, Device: "phone", GatewayId: fmt.Sprint("gw-", i%3), ConnId: int64(i)})
	}
	mustUsers(t, cli, uids...)
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: rs}); err != nil {
		t.Fatal(err)
	}
	groups := []string{"all", "odd", "small"}
	members := map[string][]string{"all": uids[1:], "small": uids[1:3]}
	for i := 3; i < 12; i += 2 {
		members["odd"] = append(members["odd"], uids[i])
	}
	for _, g := range groups {
		if _, err := cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: g, Owner: "user0", Members: members[g]}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(round int) {
		var items []*dataproxy.AppendItem
		for i, u := range uids {
			items = append(items, &dataproxy.AppendItem{ConvId: "g:" + groups[i%3], Sender: u, ClientMsgId: fmt.Sprint(round, "g", i), Body: "x"})
			peer := uids[(i+1)%len(uids)]
			items = append(items, &dataproxy.AppendItem{ConvId: ids.P2P(u, peer), Sender: u, Recipient: peer, ClientMsgId: fmt.Sprint(round, "p", i), Body: "y"})
		}
		if _, err := cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: items}); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() string {
		cur, err := cli.GetUserCursors(ctx, &dataproxy.GetUserCursorsReq{Uids: uids})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, u := range uids {
			fmt.Fprintf(&b, "%s=%d ", u, cur.Cursors[u])
		}
		for _, g := range groups {
			fmt.Fprintf(&b, "%s=%v ", g, groupRoutes(t, cli, g))
		}
		return b.String()
	}
	for r := range 3 {
		send(r)
	}
	before := snapshot()
	// Cursors are exact: the sum of each user's conversations' last_seq.
	for _, u := range uids {
		list, err := cli.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: u})
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, c := range list.Items {
			sum += c.LastSeq
		}
		if !strings.Contains(before, fmt.Sprintf("%s=%d ", u, sum)) {
			t.Fatalf("%s's cursor is not %d: %s", u, sum, before)
		}
	}
	m.FlushAll()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The gateways refresh their routes.
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: rs}); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(); after != before {
		t.Fatalf("after the flush:\n%s\nbefore:\n%s", after, before)
	}
	// And they keep following appends and membership.
	send(3)
	if _, err := cli.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "small", Uids: []string{"user1"}}); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	m.FlushAll()
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: rs}); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(); again != after {
		t.Fatalf("after the second flush:\n%s\nbefore:\n%s", again, after)
	}
	if strings.Contains(after, "small=[user1") || !slices.ContainsFunc(strings.Fields(after), func(f string) bool { return strings.HasPrefix(f, "user1=") }) {
		t.Fatalf("after the removal: %s", after)
	}
}
