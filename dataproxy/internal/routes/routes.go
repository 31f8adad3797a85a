// Package routes keeps the online route table in Redis: for every online
// user, which gateway and connection each of the user's devices is on, and
// for every group, the routes of its online members (its route set), so
// that a message to a group of any size costs one lookup.
//
// # Keys and lifetimes
//
//	<prefix>route:<uid>      hash  <device>         -> "<conn_id>:<expires_at_ms>:<gateway_id>"
//	<prefix>groute:<group>   hash  <uid>|<device>   -> the same value
//	<prefix>ugroups:<uid>    set   the ids of the active groups the user is in, and "" (the set exists once filled)
//	<prefix>fill:ugroups:<uid>     string: the token of a fill in progress (10 s)
//
// route: every SetRoutes raises the key's TTL to the request's (or the
// configured default of 10 minutes) with PEXPIRE, never lowers it, so a
// user's hash lives at least that long after the last SetRoutes for any of
// their devices, and never expires before a route it holds. Each field
// also carries its own expiry time (expires_at_ms): GetRoutes skips a
// field whose time has passed, so a device whose gateway died without a
// DelRoutes stops being returned after its own TTL even while another
// device of the same user keeps the key alive. Gateways are expected to
// call SetRoutes again well within the TTL for every live connection.
//
// groute: SetRoutes writes each route into the route set of every group in
// the user's ugroups set, and DelRoutes removes it there too (compare and
// delete, as for the user's own hash). Entries carry their own expiry like
// routes; the key's TTL is raised to the longest route written into it. A
// member added to a group gets their current routes copied in; a member
// removed gets them deleted; a dissolved group's set is deleted.
// GetGroupRoutes is one HGETALL: the set holds only online members, so its
// size is the number of online members, never the group's.
//
// ugroups: a cache of SQL (Config.Groups), filled on a miss and expiring
// after Config.SetTTL (1 hour by default). A membership change deletes the
// set (and any fill in progress, whose marker it deletes) rather than
// editing it, so the next fill reads SQL again; a fill stores its answer
// only if its marker is still there, so a fill that read SQL before a
// change never stores the old answer.
//
// Nothing in these keys is needed for correctness of stored data: losing
// all of them (FLUSHALL, a restart without persistence) makes users look
// offline until their gateways' periodic route refresh (SetRoutes again),
// which also rebuilds the group route sets; the scripts are loaded again on
// their first NOSCRIPT.
//
// # Concurrency
//
// A Table is safe for concurrent use; it holds no state besides its
// clients. Every change is a Lua script, so it is atomic with respect to
// the others: SetRoutes writes a user's routes into the route sets of the
// groups its script reads from ugroups in the same step, and a membership
// change deletes ugroups and edits the route set in one step too, so a
// route is never written into the set of a group its user has just left.
// SetRoutes and GetRoutes cost one pipelined round trip (plus a SQL read
// and one more round trip for users whose ugroups set is missing);
// DelRoutes one round trip.
package routes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/repair"
	"github.com/gochat-im/gochat/dataproxy/internal/rscript"
)

// DefaultTTL is how long a route lives when neither the call nor the
// configuration says.
const DefaultTTL = 10 * time.Minute

// DefaultSetTTL is how long a user's cached group set lives.
const DefaultSetTTL = time.Hour

// DefaultPrefix starts every key.
const DefaultPrefix = "gochat:"

// fillTTL bounds the life of a fill marker left by a caller that died.
const fillTTL = 10 * time.Second

// GroupSource answers which active groups users are members of (the SQL
// store).
type GroupSource interface {
	UserGroupIDs(ctx context.Context, uids []string) (map[string][]string, error)
}

// Config configures a Table.
type Config struct {
	// Prefix starts every key; "" means DefaultPrefix. Tests use a random one.
	Prefix string
	// TTL is the default route lifetime; 0 means DefaultTTL.
	TTL time.Duration
	// Groups, when set, turns on group route sets: SetRoutes and DelRoutes
	// keep the route sets of the users' groups.
	Groups GroupSource
	// SetTTL is the lifetime of a user's cached group set; 0 means
	// DefaultSetTTL.
	SetTTL time.Duration
	// Repair, when set, receives the keys of updates that failed after
	// their SQL change (see package repair).
	Repair *repair.Queue
	// Log receives debug messages about group route sets left to the
	// next refresh; nil discards them.
	Log *slog.Logger
}

// Route is where one device of a user is connected.
type Route struct {
	UID       string
	Device    string
	GatewayID string
	ConnID    int64
}

// Table is the route table.
type Table struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	setTTL time.Duration
	groups GroupSource
	repair *repair.Queue
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Table on rdb.
func New(cfg Config, rdb redis.UniversalClient) (*Table, error) {
	if rdb == nil {
		return nil, errors.New("routes: no redis client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.SetTTL == 0 {
		cfg.SetTTL = DefaultSetTTL
	}
	if cfg.TTL < time.Millisecond || cfg.SetTTL < time.Millisecond {
		return nil, fmt.Errorf("routes: ttl %v or set ttl %v is too short", cfg.TTL, cfg.SetTTL)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Table{rdb: rdb, prefix: cfg.Prefix, ttl: cfg.TTL, setTTL: cfg.SetTTL, groups: cfg.Groups, repair: cfg.Repair, log: cfg.Log, now: time.Now}, nil
}

// Key is the Redis key of uid's routes.
func (t *Table) Key(uid string) string { return t.prefix + "route:" + uid }

// GroupKey is the Redis key of a group's route set.
func (t *Table) GroupKey(group string) string { return t.prefix + "groute:" + group }

// UserGroupsKey is the Redis key of uid's cached group set.
func (t *Table) UserGroupsKey(uid string) string { return t.prefix + "ugroups:" + uid }

func (t *Table) fillKey(uid string) string { return t.prefix + "fill:ugroups:" + uid }

// DefaultTTL is the lifetime SetRoutes uses when given 0.
func (t *Table) DefaultTTL() time.Duration { return t.ttl }

func encode(r Route, expiresAt int64) string {
	return strconv.FormatInt(r.ConnID, 10) + ":" + strconv.FormatInt(expiresAt, 10) + ":" + r.GatewayID
}

// decode parses a field value; ok is false for a malformed one.
func decode(v string) (conn, expiresAt int64, gateway string, ok bool) {
	c, rest, ok1 := strings.Cut(v, ":")
	e, gw, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return 0, 0, "", false
	}
	conn, err1 := strconv.ParseInt(c, 10, 64)
	expiresAt, err2 := strconv.ParseInt(e, 10, 64)
	return conn, expiresAt, gw, err1 == nil && err2 == nil
}

// setScript records a user's routes (ARGV[4..]: device, value pairs) in
// KEYS[1], and in the route set of every group in the user's group set
// KEYS[2] (ARGV[1]: prefix, ARGV[3]: uid). Each key's TTL becomes ARGV[2]
// ms unless it already has a longer one: a key outlives every route in it
// (each route carries its own expiry, checked on read), so a later call
// with a shorter TTL for another device cannot make the user's hash, which
// a group removal reads to find the devices to take out of the group's
// route set, expire before a route it lists. It returns 0 when the group
// set is missing (then nothing was written to any group set), 1 otherwise.
// With KEYS[2] absent, only the user's hash is written.
var setScript = redis.NewScript(`
local ttl = tonumber(ARGV[2])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if not KEYS[2] then return 1 end
local gs = redis.call('SMEMBERS', KEYS[2])
if #gs == 0 then return 0 end
for _, g in ipairs(gs) do
  if g ~= '' then
    local k = ARGV[1] .. 'groute:' .. g
    for i = 4, #ARGV, 2 do redis.call('HSET', k, ARGV[3] .. '|' .. ARGV[i], ARGV[i+1]) end
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end
return 1
`)

// SetRoutes records routes, replacing any earlier route of the same device,
// for ttl (0 means the default), and writes them into the route sets of
// their users' groups: one script per user, in one pipeline. Users whose
// group set is missing get it filled from SQL first (see fill); if that
// fails (SQL down), their own routes are set and their group route sets
// wait for the next refresh.
func (t *Table) SetRoutes(ctx context.Context, routes []Route, ttl time.Duration) error {
	if len(routes) == 0 {
		return nil
	}
	if ttl <= 0 {
		ttl = t.ttl
	}
	expiresAt := t.now().Add(ttl).UnixMilli()
	byUser := make(map[string][]any)
	var order []string
	for _, r := range routes {
		if _, ok := byUser[r.UID]; !ok {
			order = append(order, r.UID)
		}
		byUser[r.UID] = append(byUser[r.UID], r.Device, encode(r, expiresAt))
	}
	calls := make([]rscript.Call, len(order))
	for i, uid := range order {
		keys := []string{t.Key(uid)}
		if t.groups != nil {
			keys = append(keys, t.UserGroupsKey(uid))
		}
		calls[i] = rscript.Call{Script: setScript, Keys: keys, Args: append([]any{t.prefix, ttl.Milliseconds(), uid}, byUser[uid]...)}
	}
	cmds, err := rscript.Exec(ctx, t.rdb, calls)
	if err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	var missed []string
	for i, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return fmt.Errorf("set routes of %s: %w", order[i], err)
		}
		if n == 0 {
			missed = append(missed, order[i])
		}
	}
	if len(missed) > 0 {
		if _, left, err := t.fill(ctx, missed, true); err != nil || len(left) > 0 {
			t.log.Debug("group route sets not written; the next refresh writes them", "users", len(left), "err", err)
		}
	}
	return nil
}

// DelRoutes removes each route whose device still points at the same gateway
// and connection, here and in the route sets of the user's groups, and
// returns how many it removed from the users' hashes.
func (t *Table) DelRoutes(ctx context.Context, routes []Route) (int, error) {
	if len(routes) == 0 {
		return 0, nil
	}
	calls := make([]rscript.Call, len(routes))
	for i, r := range routes {
		keys := []string{t.Key(r.UID)}
		if t.groups != nil {
			keys = append(keys, t.UserGroupsKey(r.UID))
		}
		calls[i] = rscript.Call{Script: delScript, Keys: keys, Args: []any{r.Device, strconv.FormatInt(r.ConnID, 10), r.GatewayID, t.prefix, r.UID}}
	}
	cmds, err := rscript.Exec(ctx, t.rdb, calls)
	if err != nil {
		return 0, fmt.Errorf("del routes: %w", err)
	}
	n := 0
	var missed []Route
	for i, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil || len(v) != 2 {
			return 0, fmt.Errorf("del routes: %v %w", v, err)
		}
		n += int(v[0])
		if v[1] == 0 && t.groups != nil {
			missed = append(missed, routes[i])
		}
	}
	if len(missed) > 0 {
		t.delFromGroups(ctx, missed)
	}
	return n, nil
}

// GetRoutes returns every unexpired route of the given users, in one
// pipeline, ordered by the users' order in uids and then by device.
func (t *Table) GetRoutes(ctx context.Context, uids []string) ([]Route, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	seen := make(map[string]bool, len(uids))
	var want []string
	for _, u := range uids {
		if !seen[u] {
			seen[u] = true
			want = append(want, u)
		}
	}
	cmds := make([]*redis.MapStringStringCmd, len(want))
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range want {
			cmds[i] = p.HGetAll(ctx, t.Key(u))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get routes: %w", err)
	}
	now := t.now().UnixMilli()
	var out []Route
	for i, u := range want {
		fields := cmds[i].Val()
		start := len(out)
		for dev, v := range fields {
			conn, exp, gw, ok := decode(v)
			if !ok || exp <= now {
				continue
			}
			out = append(out, Route{UID: u, Device: dev, GatewayID: gw, ConnID: conn})
		}
		part := out[start:]
		sort.Slice(part, func(a, b int) bool { return part[a].Device < part[b].Device })
	}
	return out, nil
}

// token returns a random fill marker.
func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
