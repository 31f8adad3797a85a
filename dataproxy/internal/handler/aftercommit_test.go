package handler_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/redistest"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
)

// A group change commits in the group's database; the members' list rows
// are written after it in the users' databases. These tests make that
// second step fail (a trigger in the SQLite file stands for the user's
// database failing) and check that Redis still follows the membership.

func injectFault(t *testing.T, path, trigger string) (clear func()) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if _, err := raw.Exec(trigger); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := raw.Exec("DROP TRIGGER inj"); err != nil {
			t.Fatal(err)
		}
	}
}

// Removing a member whose list row cannot be deleted still takes their
// routes out of the route set, and a refresh does not put them back.
func TestRemoveMemberWhenListRowsFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	e := startAt(t, handler.Config{}, path)
	ctx := context.Background()
	mustUsers(t, e.cli, "alice", "bob")
	bob := []*common.Route{{Uid: "bob", Device: "web", GatewayId: "gw-2", ConnId: 2}}
	if _, err := e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: bob}); err != nil { // fills bob's group set
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 1 {
		t.Fatalf("route set before: %v", got)
	}
	injectFault(t, path, "CREATE TRIGGER inj BEFORE DELETE ON user_conversations BEGIN SELECT RAISE(ABORT, 'injected'); END")
	resp, err := e.cli.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"bob"}})
	if err != nil {
		t.Fatalf("remove failed although the membership committed (a list row is only a hint): %v", err)
	}
	if resp.Changed != 1 {
		t.Fatalf("changed %d, want 1", resp.Changed)
	}
	if in, err := e.st.MembersAmong(ctx, "team", []string{"bob"}); err != nil || len(in) != 0 {
		t.Fatalf("bob still a member: %v %v", in, err)
	}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: bob}); err != nil { // bob's gateway refreshes
		t.Fatal(err)
	}
	if got := groupRoutes(t, e.cli, "team"); len(got) != 0 {
		t.Fatalf("removed member still in the route set after a refresh: %v", got)
	}
}

// Adding a member whose list row cannot be written fails the call, but the
// member is in: the route set has them, and calling again completes it.
func TestAddMemberWhenListRowsFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gochat.db")
	e := startAt(t, handler.Config{}, path)
	ctx := context.Background()
	mustUsers(t, e.cli, "alice", "carol")
	carol := []*common.Route{{Uid: "carol", Device: "web", GatewayId: "gw-2", ConnId: 3}}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: carol}); err != nil { // carol's group set: none
		t.Fatal(err)
	}
	if _, err := e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	// The row is written before the commit and again after it: make only
	// the second write fail.
	clear := injectFault(t, path, "CREATE TRIGGER inj BEFORE INSERT ON user_conversations WHEN EXISTS "+
		"(SELECT 1 FROM user_conversations u WHERE u.uid = NEW.uid AND u.conv_id = NEW.conv_id) BEGIN SELECT RAISE(ABORT, 'injected'); END")
	_, err := e.cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"carol"}})
	if code, _ := errcode.Of(err); code != errcode.Unavailable {
		t.Fatalf("add with a failing list row: %v, want unavailable", err)
	}
	if in, err := e.st.MembersAmong(ctx, "team", []string{"carol"}); err != nil || len(in) != 1 {
		t.Fatalf("carol is not a member after the commit: %v %v", in, err)
	}
	if got := groupRoutes(t, e.cli, "team"); !slices.Equal(got, []string{"carol/web@gw-2#3"}) {
		t.Fatalf("route set after the failed add: %v, want carol's route", got)
	}
	clear()
	resp, err := e.cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"carol"}})
	if err != nil || resp.Changed != 0 {
		t.Fatalf("calling again: changed %d, %v; want 0, nil", resp.GetChanged(), err)
	}
	groups, err := e.cli.ListUserGroups(ctx, &dataproxy.ListUserGroupsReq{Uid: "carol"})
	if err != nil || len(groups.Groups) != 1 || groups.Groups[0].GroupId != "team" {
		t.Fatalf("carol's groups after calling again: %v %v", groups, err)
	}
}

// The owner does not count toward the 1000 users of one call.
func TestCreateGroupWithThousandMembers(t *testing.T) {
	e := startCfg(t, handler.Config{})
	ms := make([]string, 1000)
	for i := range ms {
		ms[i] = fmt.Sprintf("u%d", i)
	}
	mustUsers(t, e.cli, append([]string{"owner"}, ms...)...)
	resp, err := e.cli.CreateGroup(context.Background(), &dataproxy.CreateGroupReq{GroupId: "big", Owner: "owner", Members: ms})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Group.MemberCount != 1001 {
		t.Fatalf("member count %d, want 1001", resp.Group.MemberCount)
	}
	_, err = e.cli.CreateGroup(context.Background(), &dataproxy.CreateGroupReq{GroupId: "bigger", Owner: "owner", Members: append(ms, "u1000")})
	wantCode(t, err, errcode.BadRequest)
}

// addDuringRemove runs add after a removal commits and before the handler
// updates Redis for it: another dataproxy instance adding the member back
// in between.
type addDuringRemove struct {
	store.Store
	add atomic.Pointer[func()] // taken by the first removal
}

func (s *addDuringRemove) RemoveGroupMembers(ctx context.Context, group string, uids []string) (int, store.Group, error) {
	n, g, err := s.Store.RemoveGroupMembers(ctx, group, uids)
	if add := s.add.Swap(nil); err == nil && add != nil {
		(*add)()
	}
	return n, g, err
}

// A member removed and added back at once keeps their routes in the
// group's route set, whichever call updates Redis last.
func TestMemberAddedBackDuringRemovalKeepsRoutes(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "gochat.db"))
	rdb, prefix := redistest.Client(t)
	wrapped := &addDuringRemove{Store: st}
	cli := serve(t, buildOver(t, handler.Config{}, st, wrapped, rdb, prefix, nil))
	mustUsers(t, cli, "alice", "bob")
	if _, err := cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "team", Owner: "alice", Members: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{{Uid: "bob", Device: "web", GatewayId: "gw-2", ConnId: 2}}}); err != nil {
		t.Fatal(err)
	}
	addBack := func() {
		if _, err := cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"bob"}}); err != nil {
			t.Errorf("add back: %v", err)
		}
	}
	wrapped.add.Store(&addBack)
	if _, err := cli.RemoveGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "team", Uids: []string{"bob"}}); err != nil {
		t.Fatal(err)
	}
	if in, err := st.MembersAmong(ctx, "team", []string{"bob"}); err != nil || len(in) != 1 {
		t.Fatalf("bob is not a member after being added back: %v %v", in, err)
	}
	if got := groupRoutes(t, cli, "team"); !slices.Equal(got, []string{"bob/web@gw-2#2"}) {
		t.Fatalf("route set: %v, want bob's route", got)
	}
}
