// Package inbox answers users' inbox cursors from Redis, exactly, with SQL
// as the truth.
//
// A user's inbox cursor is the sum of last_seq over the conversations the
// user is in (DESIGN.md section 3, point 5: a client that sums its own
// highest seq per conversation and finds less has missed a push). Reading
// it from SQL would cost a scan of the user's list and a lookup per
// conversation on every heartbeat; instead two kinds of Redis keys hold
// what the sum needs:
//
//	<prefix>lastseq:<conv>      zset    one member "s" scored with the conversation's last_seq   TTL SeqTTL (24 h), renewed on every append
//	<prefix>uconvs:<uid>        set     the user's conversation ids, and ""                      TTL SetTTL (1 h) from its fill
//	<prefix>fill:uconvs:<uid>   string  the token of a fill in progress                          10 s
//
// lastseq is written after every committed append with "set if greater"
// (appends of one conversation may finish out of order across instances),
// and created if missing: the value written is the last_seq of a committed
// transaction, and every later commit writes a larger one. "Set if
// greater" is ZADD GT, a plain command: the key is a sorted set only for
// that, since Redis has no compare-and-set for strings, and a plain
// command costs far less than a script (on the embedded server, which
// compiles every script it runs, several times less). A reader that finds
// the key missing reads last_seq from SQL and writes it the same way, then
// takes whatever the key holds: an append that committed meanwhile has
// written a value at least as large. Scores are float64, exact for every
// seq below 2^53.
//
// uconvs is filled from SQL on a miss (the "" member marks a filled set, so
// that a user in no conversation is not read from SQL every time). A
// one-to-one conversation is added after the append that wrote its list
// rows ("add if the set exists"); a group membership change deletes the
// set. Both also delete the fill marker: a fill stores what it read only if
// its marker is still there, so a fill that read SQL before the change
// never stores the old answer. Each process remembers (bounded) the pairs
// it has added, since any set filled afterwards holds them anyway.
//
// Nothing here is needed for correctness: after a FLUSHALL every key is
// rebuilt from SQL on its next use, with the same answers. An update that
// fails after its commit (Redis unreachable) queues its keys for deletion
// (package repair); until then a cursor may be low, never high. The queue
// deletes each key twice, an interval apart, against a reader that read
// SQL before the failed commit and writes its value after the first
// deletion; so a reader that took more than half that interval to read
// SQL does not cache what it read (it answers from it all the same).
//
// Concurrency: an Inbox is safe for concurrent use. Cursors costs one round
// trip (one script) when the keys are there.
package inbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/coalesce"
	"github.com/gochat-im/gochat/dataproxy/internal/genset"
	"github.com/gochat-im/gochat/dataproxy/internal/repair"
	"github.com/gochat-im/gochat/dataproxy/internal/rscript"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Defaults of Config.
const (
	DefaultSeqTTL    = 24 * time.Hour
	DefaultSetTTL    = time.Hour
	DefaultKnownSize = 200_000
	DefaultPrefix    = "gochat:"
)

const fillTTL = 10 * time.Second

// Source is the SQL truth (the store).
type Source interface {
	// UserConversations returns the conversations each user is in.
	UserConversations(ctx context.Context, uids []string) (map[string][]string, error)
	// LastSeqs returns the last_seq of the conversations that exist.
	LastSeqs(ctx context.Context, convs []string) (map[string]int64, error)
}

// Config configures an Inbox.
type Config struct {
	Prefix string        // "" means DefaultPrefix
	SeqTTL time.Duration // life of a lastseq key; 0 means DefaultSeqTTL
	SetTTL time.Duration // life of a uconvs set; 0 means DefaultSetTTL
	// KnownSize bounds the (user, conversation) pairs remembered as added
	// (per generation); 0 means DefaultKnownSize, negative turns it off.
	KnownSize int
	// Repair receives the keys of failed updates; nil: none.
	Repair *repair.Queue
}

// Inbox answers inbox cursors.
type Inbox struct {
	rdb    redis.UniversalClient
	src    Source
	prefix string
	seqTTL time.Duration
	setTTL time.Duration
	repair *repair.Queue
	known  *genset.Set[Pair]

	// updates merges the Appended calls that arrive while an update is
	// being written; one is written at a time.
	updates *coalesce.Runner[*update]

	// slowFills counts fills of lastseq keys skipped because their SQL
	// read was too slow to be stored safely (for tests).
	slowFills atomic.Int64
}

// New returns an Inbox.
func New(cfg Config, rdb redis.UniversalClient, src Source) (*Inbox, error) {
	if rdb == nil || src == nil {
		return nil, errors.New("inbox: redis client and source are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.SeqTTL == 0 {
		cfg.SeqTTL = DefaultSeqTTL
	}
	if cfg.SetTTL == 0 {
		cfg.SetTTL = DefaultSetTTL
	}
	if cfg.KnownSize == 0 {
		cfg.KnownSize = DefaultKnownSize
	}
	if cfg.SeqTTL < time.Millisecond || cfg.SetTTL < time.Millisecond {
		return nil, fmt.Errorf("inbox: ttls %v, %v are too short", cfg.SeqTTL, cfg.SetTTL)
	}
	b := &Inbox{rdb: rdb, src: src, prefix: cfg.Prefix, seqTTL: cfg.SeqTTL, setTTL: cfg.SetTTL, repair: cfg.Repair,
		known: genset.New[Pair](cfg.KnownSize)}
	b.updates = coalesce.New(newUpdate, b.apply, writeTimeout)
	return b, nil
}

// SeqKey is the Redis key of a conversation's last_seq.
func (b *Inbox) SeqKey(conv string) string { return b.prefix + seqKind + conv }

// seqKind names the last_seq keys; seqMember is their one member.
const (
	seqKind   = "lastseq:"
	seqMember = "s"
)

// raiseSeq queues "set key to seq unless it holds more, and renew its TTL".
func (b *Inbox) raiseSeq(ctx context.Context, p redis.Pipeliner, key string, seq int64) []redis.Cmder {
	return []redis.Cmder{
		p.ZAddGT(ctx, key, redis.Z{Score: float64(seq), Member: seqMember}),
		p.PExpire(ctx, key, b.seqTTL),
	}
}

// SetKey is the Redis key of a user's conversation set.
func (b *Inbox) SetKey(uid string) string { return b.prefix + "uconvs:" + uid }

func (b *Inbox) fillKey(uid string) string { return b.prefix + "fill:uconvs:" + uid }

// addScript adds ARGV[i] to the set KEYS[2i-1] if the set exists, and
// deletes the fill marker KEYS[2i].
var addScript = redis.NewScript(`
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('SADD', KEYS[i], ARGV[(i+1)/2]) end
  redis.call('DEL', KEYS[i+1])
end
return 1
`)

// Pair is a user taking part in a conversation.
type Pair struct{ UID, Conv string }

// Appended updates Redis after a committed append: seqs holds, per
// conversation, the highest seq the append returned (its last_seq then),
// pairs the one-to-one conversations' users (whose list rows the append
// made sure of). It returns once the update is written or has failed; a
// failed update queues its keys for deletion, and the returned error is
// only for the log.
//
// Concurrent calls are merged: one update runs at a time per Inbox, and
// the calls that arrive meanwhile are written together by the next one
// (the highest seq per conversation, every pair), so under load a script
// serves many appends instead of one each. If ctx ends first Appended
// returns, and the update is still written.
func (b *Inbox) Appended(ctx context.Context, seqs map[string]int64, pairs []Pair) error {
	return b.Queue(seqs, pairs)(ctx)
}

// Queue is Appended in two steps: it queues the update at once and returns
// the wait for it, which a caller that answers first can run later (or in
// another goroutine). Settle and Cursors see the update from the moment
// Queue returns.
func (b *Inbox) Queue(seqs map[string]int64, pairs []Pair) (wait func(ctx context.Context) error) {
	var fresh []Pair
	for _, p := range pairs {
		if !b.known.Has(p) {
			fresh = append(fresh, p)
		}
	}
	if len(seqs) == 0 && len(fresh) == 0 {
		return func(context.Context) error { return nil }
	}
	return b.updates.Add(func(u *update) {
		for c, s := range seqs {
			u.seqs[c] = max(u.seqs[c], s)
		}
		for _, p := range fresh {
			u.pairs[p] = true
		}
	})
}

// ErrPending is returned by Appended when its context ends before the
// update is written: the update is still queued, and is written (or its
// keys queued for deletion) later.
var ErrPending = coalesce.ErrPending

// update is the merged work of the Appended calls waiting for a write.
type update struct {
	seqs  map[string]int64
	pairs map[Pair]bool
}

func newUpdate() *update { return &update{seqs: make(map[string]int64), pairs: make(map[Pair]bool)} }

// writeTimeout bounds one merged update.
const writeTimeout = 2 * time.Second

// Settle waits until every update Appended has queued so far is written
// (or has failed), or ctx ends. Cursors calls it first, so that a process
// reads its own appends' updates even when their callers did not wait for
// them; a service calls it before closing its Redis client.
func (b *Inbox) Settle(ctx context.Context) { b.updates.Settle(ctx) }

// apply runs one merged update in one round trip: ZADD GT and PEXPIRE per
// conversation, and a script for the pairs if there are any.
func (b *Inbox) apply(ctx context.Context, u *update) error {
	var (
		calls []rscript.Call
		plain func(redis.Pipeliner)
		seqs  []redis.Cmder
	)
	if len(u.seqs) > 0 {
		plain = func(p redis.Pipeliner) {
			for c, s := range u.seqs {
				seqs = append(seqs, b.raiseSeq(ctx, p, b.SeqKey(c), s)...)
			}
		}
	}
	fresh := make([]Pair, 0, len(u.pairs))
	for p := range u.pairs {
		fresh = append(fresh, p)
	}
	if len(fresh) > 0 {
		keys := make([]string, 0, 2*len(fresh))
		args := make([]any, 0, len(fresh))
		for _, p := range fresh {
			keys = append(keys, b.SetKey(p.UID), b.fillKey(p.UID))
			args = append(args, p.Conv)
		}
		calls = append(calls, rscript.Call{Script: addScript, Keys: keys, Args: args})
	}
	cmds, err := rscript.ExecWith(ctx, b.rdb, plain, calls)
	if err == nil {
		for _, c := range seqs {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err == nil {
		for _, c := range cmds {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		var keys []string
		for c := range u.seqs {
			keys = append(keys, b.SeqKey(c))
		}
		for _, p := range fresh {
			keys = append(keys, b.SetKey(p.UID), b.fillKey(p.UID))
		}
		b.toRepair(keys...)
		return fmt.Errorf("inbox: after append: %w", err)
	}
	b.known.Add(fresh...)
	return nil
}

// Forget deletes the conversation sets of uids (their group memberships
// changed): the next Cursors reads them from SQL.
func (b *Inbox) Forget(ctx context.Context, uids []string) error {
	if len(uids) == 0 {
		return nil
	}
	keys := make([]string, 0, 2*len(uids))
	for _, u := range uids {
		keys = append(keys, b.SetKey(u), b.fillKey(u))
	}
	if err := b.rdb.Del(ctx, keys...).Err(); err != nil {
		b.toRepair(keys...)
		return fmt.Errorf("inbox: forget: %w", err)
	}
	return nil
}

func (b *Inbox) toRepair(keys ...string) {
	if b.repair != nil {
		b.repair.Add(keys...)
	}
}

// sumScript returns, per user set KEYS[i], {-1} if the set is missing, else
// {sum of the lastseq keys there are, conversations without one...}.
// ARGV[1] is the prefix and kind of the lastseq keys, ARGV[2] their member.
var sumScript = redis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local ms = redis.call('SMEMBERS', k)
  if #ms == 0 then
    out[i] = {-1}
  else
    local r = {0}
    local sum = 0
    for _, c in ipairs(ms) do
      if c ~= '' then
        local v = redis.call('ZSCORE', ARGV[1] .. c, ARGV[2])
        if v then sum = sum + tonumber(v) else r[#r+1] = c end
      end
    end
    r[1] = sum
    out[i] = r
  end
end
return out
`)

// fillScript stores the set KEYS[1] (members ARGV[3..], TTL ARGV[2] ms) if
// the fill marker KEYS[2] still holds this fill's token ARGV[1].
var fillScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[1])
redis.call('SADD', KEYS[1], '')
for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Cursors returns the inbox cursor of each user (0 for a user in no
// conversation, or a malformed uid). One script when everything is cached;
// missing sets and seqs are read from SQL and cached.
func (b *Inbox) Cursors(ctx context.Context, uids []string) (map[string]int64, error) {
	b.Settle(ctx)
	out := make(map[string]int64, len(uids))
	var want []string
	for _, u := range uids {
		if _, dup := out[u]; dup {
			continue
		}
		out[u] = 0
		if ids.ValidUID(u) {
			want = append(want, u)
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	keys := make([]string, len(want))
	for i, u := range want {
		keys[i] = b.SetKey(u)
	}
	cmds, err := rscript.Exec(ctx, b.rdb, []rscript.Call{{Script: sumScript, Keys: keys, Args: []any{b.prefix + seqKind, seqMember}}})
	if err != nil {
		return nil, fmt.Errorf("inbox cursors: %w", err)
	}
	res, err := cmds[0].Slice()
	if err != nil || len(res) != len(want) {
		return nil, fmt.Errorf("inbox cursors: %d answers for %d users: %w", len(res), len(want), err)
	}
	need := map[string][]string{} // conversation without a lastseq key -> users in it
	var missing []string
	for i, u := range want {
		r, _ := res[i].([]any)
		if len(r) == 0 {
			return nil, fmt.Errorf("inbox cursors: bad answer %v", res[i])
		}
		sum, _ := r[0].(int64)
		if sum < 0 {
			missing = append(missing, u)
			continue
		}
		out[u] = sum
		for _, c := range r[1:] {
			if s, ok := c.(string); ok {
				need[s] = append(need[s], u)
			}
		}
	}
	if len(missing) > 0 {
		if err := b.fillUsers(ctx, missing, out, need); err != nil {
			return nil, err
		}
	}
	if len(need) > 0 {
		if err := b.fillSeqs(ctx, out, need); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fillUsers reads the conversation sets of uids from SQL, stores them
// unless a change overtook the read, and adds the cached seqs of their
// conversations to out (the missing ones to need).
func (b *Inbox) fillUsers(ctx context.Context, uids []string, out map[string]int64, need map[string][]string) error {
	tok := token()
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range uids {
			p.Set(ctx, b.fillKey(u), tok, fillTTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	lists, err := b.src.UserConversations(ctx, uids)
	if err != nil {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	calls := make([]rscript.Call, len(uids))
	var convs []string
	var owners [][]string
	index := map[string]int{}
	for i, u := range uids {
		args := []any{tok, b.setTTL.Milliseconds()}
		for _, c := range lists[u] {
			args = append(args, c)
			j, ok := index[c]
			if !ok {
				j = len(convs)
				index[c] = j
				convs = append(convs, c)
				owners = append(owners, nil)
			}
			owners[j] = append(owners[j], u)
		}
		calls[i] = rscript.Call{Script: fillScript, Keys: []string{b.SetKey(u), b.fillKey(u)}, Args: args}
	}
	if _, err := rscript.Exec(ctx, b.rdb, calls); err != nil {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	if len(convs) == 0 {
		return nil
	}
	scores := make([]*redis.FloatCmd, len(convs))
	_, err = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range convs {
			scores[i] = p.ZScore(ctx, b.SeqKey(c), seqMember)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	for i, sc := range scores {
		n, err := sc.Result()
		if errors.Is(err, redis.Nil) {
			need[convs[i]] = append(need[convs[i]], owners[i]...)
			continue
		}
		if err != nil {
			return fmt.Errorf("inbox cursors: %w", err)
		}
		for _, u := range owners[i] {
			out[u] += int64(n)
		}
	}
	return nil
}

// fillSeqs reads the last_seq of the conversations in need from SQL,
// caches them (set if greater: a value written meanwhile by an append
// wins) and adds the cached values to their users' sums.
func (b *Inbox) fillSeqs(ctx context.Context, out map[string]int64, need map[string][]string) error {
	convs := make([]string, 0, len(need))
	for c := range need {
		convs = append(convs, c)
	}
	start := time.Now()
	seqs, err := b.src.LastSeqs(ctx, convs)
	if err != nil {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	if b.repair != nil && time.Since(start) > b.repair.Interval()/2 {
		// A read this slow may predate a commit whose cache update failed
		// and whose key the repair queue has deleted twice since (its
		// deletions are an interval apart): cached now, the old value would
		// stay until the conversation's next message. Answer from SQL
		// without caching; the next reader fills the keys.
		b.slowFills.Add(1)
		for c, us := range need {
			for _, u := range us {
				out[u] += seqs[c]
			}
		}
		return nil
	}
	// Each conversation's raise and read are one transaction, so the read
	// finds the key even if it expired just before.
	scores := make([]*redis.FloatCmd, len(convs))
	_, err = b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range convs {
			key := b.SeqKey(c)
			b.raiseSeq(ctx, p, key, seqs[c])
			scores[i] = p.ZScore(ctx, key, seqMember)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox cursors: %w", err)
	}
	for i, c := range convs {
		v, err := scores[i].Result()
		if err != nil {
			return fmt.Errorf("inbox cursors: %s: %w", c, err)
		}
		for _, u := range need[c] {
			out[u] += int64(v)
		}
	}
	return nil
}

func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
