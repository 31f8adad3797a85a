package routes

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// groupsOf is a GroupSource over a map, counting its reads; during, if
// set, runs inside a read (after the fill marker is set, before the
// answer), as a concurrent membership change would.
type groupsOf struct {
	mu     sync.Mutex
	of     map[string][]string
	reads  int
	during func()
}

func (g *groupsOf) UserGroupIDs(_ context.Context, uids []string) (map[string][]string, error) {
	g.mu.Lock()
	g.reads++
	out := map[string][]string{}
	for _, u := range uids {
		out[u] = slices.Clone(g.of[u])
	}
	during := g.during
	g.during = nil
	g.mu.Unlock()
	if during != nil {
		during()
	}
	return out, nil
}

func (g *groupsOf) set(uid string, groups ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.of[uid] = groups
}

// groupTable returns a Table with group route sets on backend b.
func groupTable(t *testing.T, open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)) (*Table, *redis.Client, *groupsOf) {
	t.Helper()
	tab, rdb := open(t, 0)
	src := &groupsOf{of: map[string][]string{}}
	tab.groups = src
	return tab, rdb, src
}

func sorted(rs []Route) []Route {
	sort.Slice(rs, func(a, b int) bool {
		if rs[a].UID != rs[b].UID {
			return rs[a].UID < rs[b].UID
		}
		return rs[a].Device < rs[b].Device
	})
	return rs
}

func wantGroup(t *testing.T, tab *Table, group string, want ...Route) {
	t.Helper()
	got, err := tab.GetGroupRoutes(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(slices.Clone(want))) {
		t.Fatalf("routes of %s:\n got %+v\nwant %+v", group, sorted(got), sorted(want))
	}
}

func TestGroupRouteSets(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("FollowRoutes", func(t *testing.T) { testFollowRoutes(t, b.open) })
			t.Run("Membership", func(t *testing.T) { testMembership(t, b.open) })
			t.Run("FillOvertaken", func(t *testing.T) { testFillOvertaken(t, b.open) })
			t.Run("Flush", func(t *testing.T) { testGroupFlush(t, b.open) })
		})
	}
}

// Routes set and deleted land in the route sets of the user's groups; the
// group list is read from SQL once, also for a user in no group.
func testFollowRoutes(t *testing.T, open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)) {
	tab, _, src := groupTable(t, open)
	ctx := context.Background()
	src.set("alice", "team", "all")
	src.set("bob", "all")
	aPhone := Route{UID: "alice", Device: "phone", GatewayID: "gw-1", ConnID: 1}
	aWeb := Route{UID: "alice", Device: "web", GatewayID: "gw-2", ConnID: 2}
	bob := Route{UID: "bob", Device: "phone", GatewayID: "gw:3", ConnID: 3}
	carol := Route{UID: "carol", Device: "phone", GatewayID: "gw-1", ConnID: 4}
	if err := tab.SetRoutes(ctx, []Route{aPhone, aWeb, bob, carol}, 0); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team", aPhone, aWeb)
	wantGroup(t, tab, "all", aPhone, aWeb, bob)
	wantGroup(t, tab, "nobody's")
	if src.reads != 1 {
		t.Fatalf("%d SQL reads for the first SetRoutes", src.reads)
	}
	// Refreshes and reconnects use the cached sets, carol's empty one too.
	moved := Route{UID: "alice", Device: "phone", GatewayID: "gw-9", ConnID: 9}
	if err := tab.SetRoutes(ctx, []Route{moved, bob, carol}, 0); err != nil {
		t.Fatal(err)
	}
	if src.reads != 1 {
		t.Fatalf("%d SQL reads after a refresh", src.reads)
	}
	wantGroup(t, tab, "all", moved, aWeb, bob)
	// A stale delete leaves the newer route; the right one removes it.
	if _, err := tab.DelRoutes(ctx, []Route{aPhone}); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team", moved, aWeb)
	if n, err := tab.DelRoutes(ctx, []Route{moved, bob}); err != nil || n != 2 {
		t.Fatalf("DelRoutes: %d %v", n, err)
	}
	wantGroup(t, tab, "team", aWeb)
	wantGroup(t, tab, "all", aWeb)
	// A delete that finds no cached set reads SQL and still cleans up.
	if err := tab.rdb.Del(ctx, tab.UserGroupsKey("alice")).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.DelRoutes(ctx, []Route{aWeb}); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team")
	wantGroup(t, tab, "all")
}

// Joining copies the user's live routes into the group's set; leaving
// takes them out; both make the next SetRoutes read SQL again.
func testMembership(t *testing.T, open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)) {
	tab, rdb, src := groupTable(t, open)
	ctx := context.Background()
	phone := Route{UID: "dave", Device: "phone", GatewayID: "gw-1", ConnID: 1}
	web := Route{UID: "dave", Device: "web", GatewayID: "gw-1", ConnID: 2}
	if err := tab.SetRoutes(ctx, []Route{phone, web}, 0); err != nil {
		t.Fatal(err)
	}
	src.set("dave", "team") // committed in SQL, then:
	if err := tab.JoinGroup(ctx, "team", []string{"dave", "offline"}); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team", phone, web)
	if ex, _ := rdb.Exists(ctx, tab.UserGroupsKey("dave")).Result(); ex != 0 {
		t.Fatal("the joining user's group set was kept")
	}
	reads := src.reads
	if err := tab.SetRoutes(ctx, []Route{phone}, 0); err != nil {
		t.Fatal(err)
	}
	if src.reads != reads+1 {
		t.Fatal("SetRoutes after a join did not read the groups again")
	}
	if ttl, _ := rdb.PTTL(ctx, tab.GroupKey("team")).Result(); ttl <= 0 || ttl > DefaultTTL {
		t.Fatalf("route set TTL %v", ttl)
	}
	src.set("dave")
	if err := tab.LeaveGroup(ctx, "team", []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team")
	if err := tab.SetRoutes(ctx, []Route{phone, web}, 0); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "team")

	// A dissolved group's set goes; its members' sets are forgotten.
	src.set("dave", "club")
	if err := tab.JoinGroup(ctx, "club", []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	if err := tab.SetRoutes(ctx, []Route{phone}, 0); err != nil {
		t.Fatal(err)
	}
	src.set("dave")
	if err := tab.DropGroup(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if err := tab.ForgetUserGroups(ctx, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	if err := tab.SetRoutes(ctx, []Route{phone}, 0); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "club")

	// Expired entries are not returned, and are deleted on the way.
	tab.now = func() time.Time { return time.Now().Add(-time.Hour) }
	old := Route{UID: "erin", Device: "phone", GatewayID: "gw-1", ConnID: 5}
	src.set("erin", "team")
	if err := tab.SetRoutes(ctx, []Route{old}, time.Minute); err != nil {
		t.Fatal(err)
	}
	tab.now = time.Now
	wantGroup(t, tab, "team")
	if n, _ := rdb.HLen(ctx, tab.GroupKey("team")).Result(); n != 0 {
		t.Fatalf("%d expired entries left", n)
	}
}

// A fill that read the groups before a membership change does not store
// them, and does not write the user's routes into a group left meanwhile.
func testFillOvertaken(t *testing.T, open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)) {
	tab, rdb, src := groupTable(t, open)
	ctx := context.Background()
	src.set("frank", "team", "old")
	r := Route{UID: "frank", Device: "phone", GatewayID: "gw-1", ConnID: 1}
	src.during = func() {
		// frank leaves "old" while his groups are being read (the read
		// already has it); once: the retry reads the new answer.
		src.set("frank", "team")
		if err := tab.LeaveGroup(ctx, "old", []string{"frank"}); err != nil {
			t.Error(err)
		}
	}
	if err := tab.SetRoutes(ctx, []Route{r}, 0); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "old")
	wantGroup(t, tab, "team", r)
	if got, _ := rdb.SMembers(ctx, tab.UserGroupsKey("frank")).Result(); fmt.Sprint(slices.Sorted(slices.Values(got))) != fmt.Sprint([]string{"", "team"}) {
		t.Fatalf("cached groups %q", got)
	}
	if src.reads != 2 {
		t.Fatalf("%d reads, want 2 (the overtaken one and its retry)", src.reads)
	}
}

// After a FLUSHALL the gateways' refresh (SetRoutes of every connection)
// rebuilds the route sets: the same answers as before.
func testGroupFlush(t *testing.T, open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)) {
	tab, _, src := groupTable(t, open)
	ctx := context.Background()
	var all []Route
	for i := range 20 {
		u := fmt.Sprint("user", i)
		src.set(u, "big", fmt.Sprint("small", i%3))
		all = append(all, Route{UID: u, Device: "phone", GatewayID: fmt.Sprint("gw-", i%4), ConnID: int64(i)})
	}
	if err := tab.SetRoutes(ctx, all, 0); err != nil {
		t.Fatal(err)
	}
	before := map[string][]Route{}
	for _, g := range []string{"big", "small0", "small1", "small2"} {
		rs, err := tab.GetGroupRoutes(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		before[g] = sorted(rs)
	}
	// Only the keys of this table's prefix are removed (the shared Redis
	// is never flushed).
	flushPrefix(t, tab)
	wantGroup(t, tab, "big")
	if err := tab.SetRoutes(ctx, all, 0); err != nil {
		t.Fatal(err)
	}
	for g, rs := range before {
		wantGroup(t, tab, g, rs...)
	}
	if len(before["big"]) != 20 || len(before["small0"]) != 7 {
		t.Fatalf("before: %d and %d routes", len(before["big"]), len(before["small0"]))
	}
}

// flushPrefix deletes every key of the table's prefix.
func flushPrefix(t *testing.T, tab *Table) {
	t.Helper()
	ctx := context.Background()
	keys, err := tab.rdb.Keys(ctx, tab.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := tab.rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// The scripts still run after the server forgets them.
func TestGroupScriptsAfterScriptFlush(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	src := &groupsOf{of: map[string][]string{"u": {"g"}}}
	tab, err := New(Config{Groups: src}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := Route{UID: "u", Device: "d", GatewayID: "gw", ConnID: 1}
	for range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := tab.SetRoutes(ctx, []Route{r}, 0); err != nil {
			t.Fatal(err)
		}
		wantGroup(t, tab, "g", r)
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := tab.LeaveGroup(ctx, "g", []string{"u"}); err != nil {
			t.Fatal(err)
		}
		wantGroup(t, tab, "g")
		if err := tab.JoinGroup(ctx, "g", []string{"u"}); err != nil {
			t.Fatal(err)
		}
		wantGroup(t, tab, "g", r)
	}
}

// A user's devices registered with different TTLs: the user's hash lives
// as long as the longest, so removing the user from a group still finds
// (and takes out of the group's route set) a device registered with a long
// TTL after a later call for another device with a short one has expired.
func TestLeaveGroupAfterMixedTTLs(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	tab, err := New(Config{TTL: time.Minute}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	src := &groupsOf{of: map[string][]string{}}
	tab.groups = src
	src.set("alice", "g1")
	ctx := context.Background()
	long := Route{UID: "alice", Device: "desktop", GatewayID: "gw-a", ConnID: 1}
	short := Route{UID: "alice", Device: "phone", GatewayID: "gw-b", ConnID: 2}
	if err := tab.SetRoutes(ctx, []Route{long}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := tab.SetRoutes(ctx, []Route{short}, time.Minute); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "g1", long, short)
	// Past the short TTL: the phone's route has expired, the desktop's
	// has not, and the hash that lists it is still there.
	m.FastForward(2 * time.Minute)
	tab.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if !m.Exists(tab.Key("alice")) {
		t.Fatal("the user's routes expired before the desktop's route")
	}
	src.set("alice")
	if err := tab.LeaveGroup(ctx, "g1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, tab, "g1")
	if n, _ := rdb.HLen(ctx, tab.GroupKey("g1")).Result(); n != 0 {
		t.Fatalf("the group's route set still holds %d entries of alice", n)
	}
}
