package routes

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/rscript"
)

// luaCopy defines copy(fields, key, uid, now): it writes the unexpired
// routes of a user's hash (fields, as HGETALL returns them) into the route
// set key as "<uid>|<device>", and raises the set's TTL to the longest of
// them.
const luaCopy = `
local function copy(f, key, uid, now)
  local longest = 0
  for i = 1, #f, 2 do
    local exp = tonumber(string.match(f[i+1], '^[^:]*:([^:]*):'))
    if exp and exp > now then
      redis.call('HSET', key, uid .. '|' .. f[i], f[i+1])
      if exp - now > longest then longest = exp - now end
    end
  end
  if longest > 0 and redis.call('PTTL', key) < longest then redis.call('PEXPIRE', key, longest) end
end
`

// luaCAD defines cad(key, field, conn, gw): delete field of hash key if its
// route value names connection conn on gateway gw; 1 if it deleted.
const luaCAD = `
local function cad(key, field, conn, gw)
  local v = redis.call('HGET', key, field)
  if not v then return 0 end
  local c, exp, g = string.match(v, '^([^:]*):([^:]*):(.*)$')
  if c == conn and g == gw then return redis.call('HDEL', key, field) end
  return 0
end
`

// delScript deletes a route (ARGV: device, conn id, gateway, prefix, uid)
// from the user's hash KEYS[1] and from the route sets of the groups in the
// user's group set KEYS[2] (if given), each only if it still names that
// connection. It returns {deleted from the user's hash, 0 if the group set
// was missing}.
var delScript = redis.NewScript(luaCAD + `
local n = cad(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if not KEYS[2] then return {n, 1} end
local gs = redis.call('SMEMBERS', KEYS[2])
if #gs == 0 then return {n, 0} end
for _, g in ipairs(gs) do
  if g ~= '' then cad(ARGV[4] .. 'groute:' .. g, ARGV[5] .. '|' .. ARGV[1], ARGV[2], ARGV[3]) end
end
return {n, 1}
`)

// delGroupsScript is delScript's second half for an explicit list of
// groups (ARGV[6..]), after a fill.
var delGroupsScript = redis.NewScript(luaCAD + `
for i = 6, #ARGV do cad(ARGV[4] .. 'groute:' .. ARGV[i], ARGV[5] .. '|' .. ARGV[1], ARGV[2], ARGV[3]) end
return 1
`)

// fillScript stores a user's group set KEYS[1] (ARGV[6..]: group ids, TTL
// ARGV[2] ms) if the fill marker KEYS[2] still holds this fill's token
// ARGV[1], and then, if ARGV[4] (now, ms) is not 0, copies the user's
// current routes from KEYS[3] into those groups' route sets (ARGV[3]:
// prefix, ARGV[5]: uid). Returns 1 if it stored, 0 if the fill was
// overtaken by a membership change.
var fillScript = redis.NewScript(luaCopy + `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[1])
redis.call('SADD', KEYS[1], '')
for i = 6, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local now = tonumber(ARGV[4])
if now > 0 then
  local f = redis.call('HGETALL', KEYS[3])
  for i = 6, #ARGV do copy(f, ARGV[3] .. 'groute:' .. ARGV[i], ARGV[5], now) end
end
return 1
`)

// joinScript: a user (ARGV[1]) became a member of the group whose route
// set is KEYS[4]: forget the user's group set KEYS[2] and any fill of it
// (KEYS[3]), and copy the user's routes (KEYS[1]) into the route set
// (ARGV[2]: now, ms).
var joinScript = redis.NewScript(luaCopy + `
redis.call('DEL', KEYS[2], KEYS[3])
copy(redis.call('HGETALL', KEYS[1]), KEYS[4], ARGV[1], tonumber(ARGV[2]))
return 1
`)

// leaveScript: a user (ARGV[1]) is no longer a member of the group whose
// route set is KEYS[4]: forget the user's group set KEYS[2] and any fill of
// it (KEYS[3]), and delete the user's devices (those in KEYS[1]) from the
// route set.
var leaveScript = redis.NewScript(`
redis.call('DEL', KEYS[2], KEYS[3])
for _, d in ipairs(redis.call('HKEYS', KEYS[1])) do redis.call('HDEL', KEYS[4], ARGV[1] .. '|' .. d) end
return 1
`)

// delExactScript deletes fields of hash KEYS[1] (ARGV: field, value pairs)
// that still hold the given value.
var delExactScript = redis.NewScript(`
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i+1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
`)

// maxFillTries bounds how often a fill overtaken by membership changes is
// tried again.
const maxFillTries = 3

// fill reads the active groups of uids from SQL and stores each user's
// set unless a membership change of that user came in between (then it is
// tried again, up to maxFillTries times). With copyRoutes, each user's
// routes are copied into the route sets of the groups just stored, in the
// same script. It returns the groups read from SQL, and the users whose set
// could not be stored.
func (t *Table) fill(ctx context.Context, uids []string, copyRoutes bool) (map[string][]string, []string, error) {
	all := make(map[string][]string, len(uids))
	for try := 0; try < maxFillTries && len(uids) > 0; try++ {
		tok := token()
		_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, u := range uids {
				p.Set(ctx, t.fillKey(u), tok, fillTTL)
			}
			return nil
		})
		if err != nil {
			return all, uids, fmt.Errorf("fill group sets: %w", err)
		}
		lists, err := t.groups.UserGroupIDs(ctx, uids)
		if err != nil {
			return all, uids, fmt.Errorf("fill group sets: %w", err)
		}
		now := int64(0)
		if copyRoutes {
			now = t.now().UnixMilli()
		}
		calls := make([]rscript.Call, len(uids))
		for i, u := range uids {
			all[u] = lists[u]
			args := []any{tok, t.setTTL.Milliseconds(), t.prefix, now, u}
			for _, g := range lists[u] {
				args = append(args, g)
			}
			calls[i] = rscript.Call{Script: fillScript, Keys: []string{t.UserGroupsKey(u), t.fillKey(u), t.Key(u)}, Args: args}
		}
		cmds, err := rscript.Exec(ctx, t.rdb, calls)
		if err != nil {
			return all, uids, fmt.Errorf("fill group sets: %w", err)
		}
		var again []string
		for i, c := range cmds {
			if n, err := c.Int(); err != nil || n == 0 {
				again = append(again, uids[i])
			}
		}
		uids = again
	}
	return all, uids, nil
}

// delFromGroups removes routes from the route sets of their users' groups
// when DelRoutes found no group set: the sets are filled from SQL, and the
// routes compared and deleted in the groups read (stored or not). A failure
// leaves the entries to expire with the route.
func (t *Table) delFromGroups(ctx context.Context, routes []Route) {
	uids := make([]string, 0, len(routes))
	seen := map[string]bool{}
	for _, r := range routes {
		if !seen[r.UID] {
			seen[r.UID] = true
			uids = append(uids, r.UID)
		}
	}
	lists, _, err := t.fill(ctx, uids, false)
	if err != nil {
		t.log.Debug("group route sets not cleaned; their entries expire with the routes", "err", err)
		if len(lists) == 0 {
			return
		}
	}
	var calls []rscript.Call
	for _, r := range routes {
		gs, ok := lists[r.UID]
		if !ok || len(gs) == 0 {
			continue
		}
		args := []any{r.Device, strconv.FormatInt(r.ConnID, 10), r.GatewayID, t.prefix, r.UID}
		for _, g := range gs {
			args = append(args, g)
		}
		calls = append(calls, rscript.Call{Script: delGroupsScript, Args: args})
	}
	_, _ = rscript.Exec(ctx, t.rdb, calls)
}

// JoinGroup updates Redis after uids became members of group (committed in
// SQL): their group sets are forgotten (the next use reads SQL) and their
// current routes are copied into the group's route set. On failure the
// affected keys go to the repair queue and the error is returned.
func (t *Table) JoinGroup(ctx context.Context, group string, uids []string) error {
	return t.membership(ctx, joinScript, group, uids, false)
}

// LeaveGroup updates Redis after uids stopped being members of group
// (committed in SQL): their group sets are forgotten and their devices
// deleted from the group's route set. On failure the group sets and the
// whole route set go to the repair queue (the route set is rebuilt by the
// next route refresh), and the error is returned.
func (t *Table) LeaveGroup(ctx context.Context, group string, uids []string) error {
	return t.membership(ctx, leaveScript, group, uids, true)
}

func (t *Table) membership(ctx context.Context, s *redis.Script, group string, uids []string, leaving bool) error {
	if len(uids) == 0 {
		return nil
	}
	gk := t.GroupKey(group)
	now := t.now().UnixMilli()
	calls := make([]rscript.Call, len(uids))
	for i, u := range uids {
		calls[i] = rscript.Call{Script: s, Keys: []string{t.Key(u), t.UserGroupsKey(u), t.fillKey(u), gk}, Args: []any{u, now}}
	}
	cmds, err := rscript.Exec(ctx, t.rdb, calls)
	if err == nil {
		for _, c := range cmds {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		keys := t.userKeys(uids)
		if leaving {
			keys = append(keys, gk)
		}
		t.toRepair(keys...)
		return fmt.Errorf("group %s route set: %w", group, err)
	}
	return nil
}

// DropGroup deletes a dissolved group's route set.
func (t *Table) DropGroup(ctx context.Context, group string) error {
	if err := t.rdb.Del(ctx, t.GroupKey(group)).Err(); err != nil {
		t.toRepair(t.GroupKey(group))
		return fmt.Errorf("drop route set of %s: %w", group, err)
	}
	return nil
}

// ForgetUserGroups deletes the cached group sets of uids (and any fill in
// progress), so that their next use reads SQL.
func (t *Table) ForgetUserGroups(ctx context.Context, uids []string) error {
	if len(uids) == 0 {
		return nil
	}
	keys := t.userKeys(uids)
	if err := t.rdb.Del(ctx, keys...).Err(); err != nil {
		t.toRepair(keys...)
		return fmt.Errorf("forget group sets: %w", err)
	}
	return nil
}

func (t *Table) userKeys(uids []string) []string {
	keys := make([]string, 0, 2*len(uids))
	for _, u := range uids {
		keys = append(keys, t.UserGroupsKey(u), t.fillKey(u))
	}
	return keys
}

// RepairGroup queues the group's whole route set for deletion, for when
// it may hold routes of users who are no longer members: the members'
// next route refreshes build it again (until then they find the group's
// messages by sync, guided by the inbox cursor).
func (t *Table) RepairGroup(group string) { t.toRepair(t.GroupKey(group)) }

func (t *Table) toRepair(keys ...string) {
	if t.repair != nil {
		t.repair.Add(keys...)
	}
}

// GetGroupRoutes returns the unexpired routes in a group's route set, in no
// particular order: one HGETALL. Expired entries are deleted on the way
// (only if they still hold what was read).
func (t *Table) GetGroupRoutes(ctx context.Context, group string) ([]Route, error) {
	key := t.GroupKey(group)
	fields, err := t.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("get group routes of %s: %w", group, err)
	}
	now := t.now().UnixMilli()
	out := make([]Route, 0, len(fields))
	var expired []any
	for f, v := range fields {
		uid, dev, ok := strings.Cut(f, "|")
		conn, exp, gw, ok2 := decode(v)
		if !ok || !ok2 || exp <= now {
			expired = append(expired, f, v)
			continue
		}
		out = append(out, Route{UID: uid, Device: dev, GatewayID: gw, ConnID: conn})
	}
	if len(expired) > 0 {
		_, _ = rscript.Exec(ctx, t.rdb, []rscript.Call{{Script: delExactScript, Keys: []string{key}, Args: expired}})
	}
	return out, nil
}
