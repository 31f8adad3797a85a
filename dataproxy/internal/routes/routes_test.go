package routes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/redistest"
)

// backends are the Redis servers the table must work with: the real Redis
// of production, and miniredis, the embedded server of `make run`.
var backends = []struct {
	name string
	open func(t *testing.T, ttl time.Duration) (*Table, *redis.Client)
}{
	{"redis", func(t *testing.T, ttl time.Duration) (*Table, *redis.Client) { return newTable(t, ttl) }},
	{"miniredis", newMiniTable},
}

func TestRoutes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("SetGetManyUsers", func(t *testing.T) { tab, _ := b.open(t, 0); testSetGetManyUsers(t, tab) })
			t.Run("MultiDevice", func(t *testing.T) { tab, _ := b.open(t, 0); testMultiDevice(t, tab) })
			t.Run("CompareAndDelete", func(t *testing.T) { tab, rdb := b.open(t, 0); testCompareAndDelete(t, tab, rdb) })
		})
	}
}

func newMiniTable(t *testing.T, ttl time.Duration) (*Table, *redis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	tab, err := New(Config{TTL: ttl}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	return tab, rdb
}

// newTable returns a Table on the real Redis under a random key prefix whose
// keys are deleted when the test ends.
func newTable(t testing.TB, ttl time.Duration) (*Table, *redis.Client) {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	tab, err := New(Config{Prefix: prefix, TTL: ttl}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	return tab, rdb
}

func testSetGetManyUsers(t *testing.T, tab *Table) {
	ctx := context.Background()
	var set []Route
	var uids []string
	for i := range 50 {
		u := fmt.Sprintf("user%02d", i)
		uids = append(uids, u)
		set = append(set, Route{UID: u, Device: "phone", GatewayID: fmt.Sprintf("gw-%d", i%3), ConnID: int64(1000 + i)})
	}
	if err := tab.SetRoutes(ctx, set, 0); err != nil {
		t.Fatal(err)
	}
	got, err := tab.GetRoutes(ctx, append([]string{"nobody"}, uids...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(set) {
		t.Fatalf("got %d routes, want %d", len(got), len(set))
	}
	for i, r := range got {
		if r != set[i] {
			t.Fatalf("route %d: %+v, want %+v", i, r, set[i])
		}
	}
	if got, err := tab.GetRoutes(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no uids: %v %v", got, err)
	}
}

func testMultiDevice(t *testing.T, tab *Table) {
	ctx := context.Background()
	routes := []Route{
		{UID: "alice", Device: "web", GatewayID: "gw-a", ConnID: 1},
		{UID: "alice", Device: "phone", GatewayID: "gw-b", ConnID: 7},
		{UID: "bob", Device: "phone", GatewayID: "gw:with:colons", ConnID: 3},
	}
	if err := tab.SetRoutes(ctx, routes, 0); err != nil {
		t.Fatal(err)
	}
	got, err := tab.GetRoutes(ctx, []string{"alice", "bob", "alice"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{routes[1], routes[0], routes[2]} // by user, then device
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Reconnecting a device replaces its route.
	moved := Route{UID: "alice", Device: "web", GatewayID: "gw-c", ConnID: 9}
	if err := tab.SetRoutes(ctx, []Route{moved}, 0); err != nil {
		t.Fatal(err)
	}
	got, _ = tab.GetRoutes(ctx, []string{"alice"})
	if len(got) != 2 || got[1] != moved {
		t.Fatalf("after reconnect: %+v", got)
	}
}

func testCompareAndDelete(t *testing.T, tab *Table, rdb *redis.Client) {
	ctx := context.Background()
	old := Route{UID: "alice", Device: "phone", GatewayID: "gw-a", ConnID: 1}
	other := Route{UID: "alice", Device: "web", GatewayID: "gw-a", ConnID: 2}
	if err := tab.SetRoutes(ctx, []Route{old, other}, 0); err != nil {
		t.Fatal(err)
	}
	// The phone reconnects through another gateway before the old
	// connection's disconnect arrives.
	newer := Route{UID: "alice", Device: "phone", GatewayID: "gw-b", ConnID: 5}
	if err := tab.SetRoutes(ctx, []Route{newer}, 0); err != nil {
		t.Fatal(err)
	}
	// Same conn id on another gateway, and same gateway with another conn id,
	// must not match either.
	n, err := tab.DelRoutes(ctx, []Route{old, {UID: "alice", Device: "phone", GatewayID: "gw-a", ConnID: 5}, {UID: "alice", Device: "phone", GatewayID: "gw-b", ConnID: 1}, {UID: "nobody", Device: "x", GatewayID: "gw-a", ConnID: 1}})
	if err != nil || n != 0 {
		t.Fatalf("stale deletes removed %d routes (%v)", n, err)
	}
	got, _ := tab.GetRoutes(ctx, []string{"alice"})
	if len(got) != 2 || got[0] != newer || got[1] != other {
		t.Fatalf("after stale deletes: %+v", got)
	}
	// The right ones go; the last one takes the key with it.
	if n, err := tab.DelRoutes(ctx, []Route{newer, other}); err != nil || n != 2 {
		t.Fatalf("deletes: %d %v", n, err)
	}
	if got, _ := tab.GetRoutes(ctx, []string{"alice"}); len(got) != 0 {
		t.Fatalf("after deletes: %+v", got)
	}
	if ex, _ := rdb.Exists(ctx, tab.Key("alice")).Result(); ex != 0 {
		t.Fatal("empty route hash still exists")
	}
	// Works after the server forgets the script.
	if err := tab.SetRoutes(ctx, []Route{old}, 0); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := tab.DelRoutes(ctx, []Route{old}); err != nil || n != 1 {
		t.Fatalf("delete after SCRIPT FLUSH: %d %v", n, err)
	}
}

func TestTTL(t *testing.T) {
	tab, rdb := newTable(t, 0)
	ctx := context.Background()
	r := Route{UID: "alice", Device: "phone", GatewayID: "gw-a", ConnID: 1}
	if err := tab.SetRoutes(ctx, []Route{r}, 0); err != nil {
		t.Fatal(err)
	}
	ttl, err := rdb.PTTL(ctx, tab.Key("alice")).Result()
	if err != nil || ttl <= DefaultTTL-time.Minute || ttl > DefaultTTL {
		t.Fatalf("default TTL: %v %v", ttl, err)
	}
	// A call with a shorter TTL, for the same or another device, leaves the
	// key's longer TTL (the key outlives every route it lists; each route
	// carries its own expiry).
	phone2 := Route{UID: "alice", Device: "pad", GatewayID: "gw-b", ConnID: 2}
	if err := tab.SetRoutes(ctx, []Route{r, phone2}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rdb.PTTL(ctx, tab.Key("alice")).Result(); ttl <= DefaultTTL-time.Minute {
		t.Fatalf("TTL after a shorter call: %v", ttl)
	}
	// A longer one extends it.
	if err := tab.SetRoutes(ctx, []Route{phone2}, 2*DefaultTTL); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rdb.PTTL(ctx, tab.Key("alice")).Result(); ttl <= 2*DefaultTTL-time.Minute {
		t.Fatalf("TTL after a longer call: %v", ttl)
	}
	// A key without TTL (as if created by hand) gets one.
	if err := rdb.HSet(ctx, tab.Key("carol"), "x", "1:1:gw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := tab.SetRoutes(ctx, []Route{{UID: "carol", Device: "phone", GatewayID: "gw", ConnID: 3}}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rdb.PTTL(ctx, tab.Key("carol")).Result(); ttl <= 20*time.Second || ttl > 30*time.Second {
		t.Fatalf("TTL of a key that had none: %v", ttl)
	}

	// A short configured default, and expiry of one device while another
	// keeps the key alive.
	short, rdb2 := newTable(t, 300*time.Millisecond)
	if err := short.SetRoutes(ctx, []Route{{UID: "bob", Device: "old", GatewayID: "gw-dead", ConnID: 1}}, 0); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rdb2.PTTL(ctx, short.Key("bob")).Result(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("configured TTL: %v", ttl)
	}
	live := Route{UID: "bob", Device: "new", GatewayID: "gw-live", ConnID: 2}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Refresh only the live device, as its gateway would.
		if err := short.SetRoutes(ctx, []Route{live}, 0); err != nil {
			t.Fatal(err)
		}
		got, err := short.GetRoutes(ctx, []string{"bob"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0] == live {
			break // the unrefreshed device has expired
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale device never expired: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// With no refresh at all, the key itself goes.
	for ex := int64(1); ex != 0; {
		if time.Now().After(deadline) {
			t.Fatal("route key never expired")
		}
		time.Sleep(50 * time.Millisecond)
		ex, _ = rdb2.Exists(ctx, short.Key("bob")).Result()
	}
}

// miniredis ages keys only when told; the embedded stack moves its clock.
func TestMiniredisTTL(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	tab, err := New(Config{TTL: time.Minute}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tab.SetRoutes(ctx, []Route{{UID: "alice", Device: "phone", GatewayID: "gw", ConnID: 1}}, 0); err != nil {
		t.Fatal(err)
	}
	if ttl := m.TTL(tab.Key("alice")); ttl != time.Minute {
		t.Fatalf("TTL %v", ttl)
	}
	m.FastForward(61 * time.Second)
	if m.Exists(tab.Key("alice")) {
		t.Fatal("key outlived its TTL")
	}
}

func TestDecode(t *testing.T) {
	r := Route{UID: "u", Device: "d", GatewayID: "gw:1", ConnID: -42}
	conn, exp, gw, ok := decode(encode(r, 99))
	if !ok || conn != -42 || exp != 99 || gw != "gw:1" {
		t.Fatalf("round trip: %d %d %q %v", conn, exp, gw, ok)
	}
	for _, bad := range []string{"", "1", "1:2", "x:2:gw", "1:y:gw"} {
		if _, _, _, ok := decode(bad); ok {
			t.Errorf("decode(%q) ok", bad)
		}
	}
}
