// Package routes keeps the online route table in Redis: for every online
// user, which gateway and connection each of the user's devices is on.
//
// # Keys and lifetimes
//
// There is one kind of key, a hash per user:
//
//	<prefix>route:<uid>   field <device>   value "<conn_id>:<expires_at_ms>:<gateway_id>"
//
// Its lifetime: every SetRoutes gives the key a TTL (the request's, or the
// configured default of 10 minutes) with PEXPIRE, so a user's hash disappears
// that long after the last SetRoutes for any of their devices. Each field also
// carries its own expiry time (expires_at_ms): GetRoutes skips a field whose
// time has passed, so a device whose gateway died without a DelRoutes stops
// being returned after its own TTL even while another device of the same user
// keeps the key alive. Such stale fields are removed with the key, or earlier
// when the device connects again. The key's TTL is that of the latest
// SetRoutes, so a caller that mixes TTLs for one user can shorten the life of
// an earlier, longer route. Gateways are expected to call SetRoutes again
// well within the TTL for every live connection. Nothing else is stored.
//
// That is the only kind of key the dataproxy writes: no sequence counters
// (seqs are assigned in the SQL transaction that stores the messages, see
// package store) and no caches live in Redis. Losing the whole of Redis
// (FLUSHALL, a restart without persistence) therefore loses no message and
// changes no seq; it only makes users look offline until their gateways set
// their routes again, and the compare-and-delete script is loaded again on
// its first NOSCRIPT.
//
// # Concurrency
//
// A Table is safe for concurrent use; it holds no state besides the Redis
// client. SetRoutes and GetRoutes each cost one pipelined round trip;
// DelRoutes one round trip of a compare-and-delete script per route.
// A disconnect racing a reconnect of the same device is settled by that
// script: it deletes the field only if it still names the disconnecting
// gateway and connection, so the newer connection's route survives.
package routes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTTL is how long a route lives when neither the call nor the
// configuration says.
const DefaultTTL = 10 * time.Minute

// DefaultPrefix starts every key.
const DefaultPrefix = "gochat:"

// Config configures a Table.
type Config struct {
	// Prefix starts every key; "" means DefaultPrefix. Tests use a random one.
	Prefix string
	// TTL is the default route lifetime; 0 means DefaultTTL.
	TTL time.Duration
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
	now    func() time.Time
	del    *redis.Script
}

// delScript deletes field ARGV[1] of KEYS[1] if its value still names
// connection ARGV[2] on gateway ARGV[3]. Returns 1 if it deleted.
const delScript = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local conn, exp, gw = string.match(v, '^([^:]*):([^:]*):(.*)$')
if conn == ARGV[2] and gw == ARGV[3] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`

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
	if cfg.TTL < time.Millisecond {
		return nil, fmt.Errorf("routes: ttl %v is too short", cfg.TTL)
	}
	return &Table{rdb: rdb, prefix: cfg.Prefix, ttl: cfg.TTL, now: time.Now, del: redis.NewScript(delScript)}, nil
}

// Key is the Redis key of uid's routes.
func (t *Table) Key(uid string) string { return t.prefix + "route:" + uid }

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

// SetRoutes records routes, replacing any earlier route of the same device,
// for ttl (0 means the default), in one pipeline: an HSET and a PEXPIRE per
// user, wrapped in MULTI/EXEC so that no key is ever left without its TTL.
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
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, uid := range order {
			k := t.Key(uid)
			p.HSet(ctx, k, byUser[uid]...)
			p.PExpire(ctx, k, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	return nil
}

// DelRoutes removes each route whose device still points at the same gateway
// and connection, and returns how many it removed.
func (t *Table) DelRoutes(ctx context.Context, routes []Route) (int, error) {
	if len(routes) == 0 {
		return 0, nil
	}
	run := func() ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, len(routes))
		_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range routes {
				cmds[i] = t.del.EvalSha(ctx, p, []string{t.Key(r.UID)}, r.Device, strconv.FormatInt(r.ConnID, 10), r.GatewayID)
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server lost its script cache (a restart, SCRIPT FLUSH): load
		// the script and run the batch again; deleting is idempotent.
		if lerr := t.del.Load(ctx, t.rdb).Err(); lerr != nil {
			return 0, fmt.Errorf("del routes: load script: %w", lerr)
		}
		cmds, err = run()
	}
	if err != nil {
		return 0, fmt.Errorf("del routes: %w", err)
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v > 0 {
			n++
		}
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
