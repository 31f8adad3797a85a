package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/coalesce"
	"github.com/gochat-im/gochat/dataproxy/internal/genset"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// SQLStore is the Store over one or more SQL databases (SQLite files or
// MySQL databases) laid out as described in the package doc. It is safe for
// concurrent use.
type SQLStore struct {
	layout Layout
	dbs    []*shardDB
	d      dialect
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	stats  *counters
	index  *genset.Set[string]
	// senders writes the senders' cursors appends leave to after their
	// commit.
	senders *coalesce.Runner[*senderCursors]

	migrations []migration
	closeOnce  sync.Once
	closeErr   error
}

// newSQLStore assembles a store from its opened databases (in shard order)
// and starts their committers.
func newSQLStore(dbs []*shardDB, d dialect, opts Options, stats *counters, log *slog.Logger) (*SQLStore, error) {
	migs, err := loadMigrations(d.name)
	if err != nil {
		return nil, err
	}
	s := &SQLStore{
		layout: dbs[0].layout, dbs: dbs, d: d, opts: opts, log: log, now: time.Now, stats: stats,
		index: genset.New[string](opts.IndexCache), migrations: migs,
	}
	s.senders = coalesce.New(newSenderCursors, s.raiseSenders, DefaultTxTimeout)
	gc := opts.GroupCommit.withDefaults(d, len(dbs))
	for _, db := range dbs {
		db.gc = newCommitter(db, gc)
	}
	return s, nil
}

// Layout returns the store's layout.
func (s *SQLStore) Layout() Layout { return s.layout }

// Ready migrates the schema of every database, checks the layout and
// prepares the hot statements: what a service calls once after Open.
func (s *SQLStore) Ready(ctx context.Context) error {
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	single := s.layout == Layout{1, 1}
	for _, d := range s.dbs {
		if err := d.prepare(ctx, single); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the committers (calls still waiting fail) and closes every
// database handle. It is safe to call more than once.
func (s *SQLStore) Close() error {
	s.closeOnce.Do(func() {
		var wg sync.WaitGroup
		errs := make([]error, len(s.dbs))
		for i, d := range s.dbs {
			wg.Go(func() { errs[i] = d.close() })
		}
		wg.Wait()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// AppendMessages implements Store. The valid items are split by database;
// each database's share goes to its group committer and is committed, all
// of it or none, in one transaction (shared with other calls). When the
// items of one call live in several databases, each database commits its
// share on its own: if one fails, the call returns an error although other
// shares may be stored. Retrying the call is safe: what was stored comes
// back as duplicates with its original seq.
//
// A conversation's members get their conversation-list rows (in the
// database of each member) before or with its first message: rows in the
// conversation's own database are written in the same transaction, rows in
// other databases in a transaction that commits first. So a list never
// misses a conversation that has messages; it may hold one whose first
// append failed, which ListConversations skips until it has a message.
func (s *SQLStore) AppendMessages(ctx context.Context, items []AppendItem) ([]AppendResult, error) {
	results := make([]AppendResult, len(items))
	now := s.now().UnixMilli()
	reqs := make([]*appendReq, len(s.dbs))
	for i := range items {
		if e := validateItem(&items[i], s.opts.MaxBody); e != nil {
			results[i] = AppendResult{ErrorCode: int32(e.Code), ErrorMessage: e.Msg}
			continue
		}
		db, _ := s.layout.Locate(items[i].ConvID)
		r := reqs[db]
		if r == nil {
			r = &appendReq{ctx: ctx, now: now, done: make(chan struct{})}
			reqs[db] = r
		}
		it := items[i]
		if it.RecallSeq > 0 {
			it.ContentType = protocol.ContentTypeRecall
		} else {
			it.RecallWindowMs = 0
		}
		r.items = append(r.items, it)
		r.pos = append(r.pos, i)
	}

	// Conversation-list rows this process has not seen committed.
	early := make([]*appendReq, len(s.dbs))
	var keys []string
	seen := make(map[string]bool)
	for db, r := range reqs {
		if r == nil {
			continue
		}
		for k := range r.items {
			for _, row := range members(&r.items[k], now) {
				key := indexKey(row.uid, row.conv)
				if seen[key] || s.index.Has(key) {
					continue
				}
				seen[key] = true
				keys = append(keys, key)
				udb, ut := s.layout.Locate(row.uid)
				row.table = ut
				if udb == db {
					r.index = append(r.index, row)
					continue
				}
				e := early[udb]
				if e == nil {
					e = &appendReq{ctx: ctx, now: now, done: make(chan struct{})}
					early[udb] = e
				}
				e.index = append(e.index, row)
			}
		}
	}
	s.stats.indexRows.Add(uint64(len(keys)))
	if err := s.run(ctx, early); err != nil {
		return nil, fmt.Errorf("append messages: conversation lists: %w", err)
	}
	if err := s.run(ctx, reqs); err != nil {
		return nil, fmt.Errorf("append messages: %w", err)
	}
	s.index.Add(keys...)
	var remote []CursorUpdate
	for _, r := range reqs {
		if r == nil {
			continue
		}
		for k, i := range r.pos {
			results[i] = r.res[k]
		}
		for _, c := range r.remote {
			remote = append(remote, CursorUpdate{UID: c.key.uid, ConvID: c.key.conv, DeliveredSeq: c.delivered, ReadSeq: c.read})
		}
	}
	if len(remote) > 0 {
		// The messages are stored: a cursor that could not be raised is
		// only an unread count too high, not a reason to fail the call.
		if err := s.senders.Add(func(m *senderCursors) { m.add(remote) })(ctx); err != nil {
			s.stats.cursorFails.Add(1)
			s.log.Warn("senders' cursors not raised after an append", "err", err)
		}
	}
	return results, nil
}

// senderCursors is the merged work of the appends waiting for their
// senders' cursors to be raised after their commits (see
// shardDB.senderCursors): one UpdateCursors at a time carries every raise
// that arrived meanwhile (the highest values per list row), so that under
// load many appends share one transaction per database instead of adding
// one each (SQLStore.senders).
type senderCursors struct {
	at    map[cursorKey]int // index in order
	order []CursorUpdate
}

func newSenderCursors() *senderCursors { return &senderCursors{at: make(map[cursorKey]int)} }

// add merges ups.
func (m *senderCursors) add(ups []CursorUpdate) {
	for _, u := range ups {
		k := cursorKey{u.UID, u.ConvID}
		if i, ok := m.at[k]; ok {
			m.order[i].DeliveredSeq = max(m.order[i].DeliveredSeq, u.DeliveredSeq)
			m.order[i].ReadSeq = max(m.order[i].ReadSeq, u.ReadSeq)
			continue
		}
		m.at[k] = len(m.order)
		m.order = append(m.order, u)
	}
}

// senderCursorAttempts bounds the tries of one merged update.
const senderCursorAttempts = 3

// raiseSenders writes one merged batch of senders' cursors.
func (s *SQLStore) raiseSenders(ctx context.Context, m *senderCursors) error {
	var err error
	for attempt := 1; attempt <= senderCursorAttempts; attempt++ {
		if _, err = s.UpdateCursors(ctx, m.order); err == nil || errors.Is(err, errClosed) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
	return err
}

// run hands each non-nil reqs[db] to database db's committer and waits for
// all of them; it returns the first error.
func (s *SQLStore) run(ctx context.Context, reqs []*appendReq) error {
	var sent []*appendReq
	var first error
	for db, r := range reqs {
		if r == nil {
			continue
		}
		if err := s.dbs[db].gc.submit(r); err != nil {
			first = err
			break
		}
		sent = append(sent, r)
	}
	for _, r := range sent {
		select {
		case <-r.done:
			if r.err != nil && first == nil {
				first = r.err
			}
		case <-ctx.Done():
			// The transaction may still commit; a retry finds it.
			return cmp.Or(first, ctx.Err())
		}
	}
	return first
}

// members returns the conversation-list rows an item implies: both users of
// a one-to-one conversation. (A group's rows are written when members
// join, see CreateGroup.)
func members(it *AppendItem, now int64) []indexRow {
	if a, b, ok := ids.ParseP2P(it.ConvID); ok {
		return []indexRow{
			{uid: a, conv: it.ConvID, kind: ids.KindP2P, peer: b, created: now},
			{uid: b, conv: it.ConvID, kind: ids.KindP2P, peer: a, created: now},
		}
	}
	return nil
}

// SyncMessages implements Store. It reads the conversation's last_seq on
// the primary first and then only messages up to it: those are committed
// (they were written in the same transaction as last_seq), so a page never
// has a hole filled later, and every message acknowledged before the call
// began is within reach.
//
// With replicas, the messages are read from one, and the page is used only
// if it is exactly what the primary's last_seq promises: seqs after_seq+1,
// +2, ... with none missing. A replica that lags for this conversation (it
// has not applied the latest commits) returns fewer rows; the page is then
// read again from the primary. So a sync right after an ack always sees the
// acked message, whichever dataproxy instance acked it, while the bulk of
// the reading is done by replicas that keep up. A replica page of older
// messages is used while the replica lags only if no recall stored since
// the replica's last_seq (read before the page) names a message of it:
// a recall changes the recalled row in the commit that adds its event, so
// a lagging replica would still hand out the recalled body.
func (s *SQLStore) SyncMessages(ctx context.Context, conv string, afterSeq int64, limit int) (SyncResult, error) {
	if !ids.ValidConv(conv) {
		return SyncResult{}, badConv(conv)
	}
	if afterSeq < 0 {
		return SyncResult{}, badField("after_seq is negative")
	}
	limit, err := syncLimit(limit)
	if err != nil {
		return SyncResult{}, err
	}
	db, t := s.layout.Locate(conv)
	d := s.dbs[db]
	ts := d.t[t]
	var res SyncResult
	err = d.queryRow(ctx, d.r, ts.lastSeq, conv).Scan(&res.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return SyncResult{}, convNotFound(conv)
	}
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", conv, err)
	}
	if afterSeq >= res.LastSeq {
		return res, nil
	}
	want := min(int64(limit), res.LastSeq-afterSeq)
	if rep := d.replica(); rep != nil {
		var repLast int64
		err := d.queryRow(ctx, rep, ts.lastSeq, conv).Scan(&repLast)
		var msgs []Message
		if err == nil {
			msgs, err = d.readMessages(ctx, rep, ts, conv, afterSeq, res.LastSeq, limit)
		}
		complete := err == nil && int64(len(msgs)) == want && msgs[len(msgs)-1].Seq == afterSeq+want
		if complete && repLast < res.LastSeq {
			var recalls int
			if err = d.queryRow(ctx, d.r, ts.recallsIn, conv, repLast, afterSeq+1, afterSeq+want).Scan(&recalls); err != nil || recalls > 0 {
				complete = false
			}
		}
		if complete {
			s.stats.replicaReads.Add(1)
			res.Messages = msgs
			res.HasMore = afterSeq+want < res.LastSeq
			return res, nil
		}
		s.stats.replicaMisses.Add(1)
		if err != nil {
			d.log.Debug("replica read failed", "db", d.name, "conv", conv, "err", err)
		}
	}
	msgs, err := d.readMessages(ctx, d.r, ts, conv, afterSeq, res.LastSeq, limit)
	if err != nil {
		return SyncResult{}, err
	}
	res.Messages = msgs
	last := afterSeq
	if n := len(msgs); n > 0 {
		last = msgs[n-1].Seq
	}
	res.HasMore = last < res.LastSeq
	return res, nil
}

func (d *shardDB) readMessages(ctx context.Context, db *sql.DB, ts tableSQL, conv string, afterSeq, lastSeq int64, limit int) ([]Message, error) {
	out := make([]Message, 0, min(int64(limit), lastSeq-afterSeq))
	err := scanRows(d.query(ctx, db, ts.sync, conv, afterSeq, lastSeq, limit))(func(rows *sql.Rows) error {
		m := Message{ConvID: conv}
		var recalled int
		if err := rows.Scan(&m.Seq, &m.Sender, &m.Recipient, &m.ClientMsgID, &m.ContentType, &m.Body, &m.CreatedAtMs, &recalled, &m.RefSeq); err != nil {
			return err
		}
		if recalled != 0 {
			m.Recalled, m.Body = true, ""
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", conv, err)
	}
	return out, nil
}

// read runs fn on d's primary, or, when lag is allowed, as readAny does.
func (s *SQLStore) read(d *shardDB, lag bool, fn func(db *sql.DB) error) error {
	if lag {
		return s.readAny(d, fn)
	}
	return fn(d.r)
}

// readAny runs fn on a replica of d if it has one, and on the primary if it
// has none or the replica fails. For reads that may lag.
func (s *SQLStore) readAny(d *shardDB, fn func(db *sql.DB) error) error {
	if rep := d.replica(); rep != nil {
		err := fn(rep)
		if err == nil {
			s.stats.replicaReads.Add(1)
			return nil
		}
		s.stats.replicaMisses.Add(1)
		d.log.Debug("replica read failed", "db", d.name, "err", err)
	}
	return fn(d.r)
}

// UpsertUsers implements Store. Users live in shard 0 (see the package doc).
func (s *SQLStore) UpsertUsers(ctx context.Context, users []User) (int, error) {
	now := s.now().UnixMilli()
	seen := make(map[string]bool, len(users))
	todo := make([]User, 0, len(users))
	for i := range users {
		if e := validateUser(&users[i]); e != nil {
			return 0, e
		}
		if seen[users[i].UID] {
			continue
		}
		seen[users[i].UID] = true
		u := users[i]
		if u.CreatedAtMs == 0 {
			u.CreatedAtMs = now
		}
		todo = append(todo, u)
	}
	if len(todo) == 0 {
		return 0, nil
	}
	d := s.dbs[0]
	tx, err := d.w.BeginTx(ctx, d.d.txOptions)
	if err != nil {
		return 0, fmt.Errorf("upsert users: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	created := 0
	for lo := 0; lo < len(todo); lo += rowsPerStmt {
		part := todo[lo:min(lo+rowsPerStmt, len(todo))]
		args := make([]any, 0, 3*len(part))
		for _, u := range part {
			args = append(args, u.UID, u.Name, u.CreatedAtMs)
		}
		q := values(rowSQL{head: "INSERT INTO users (uid, name, created_at_ms) VALUES ", tuple: "(?, ?, ?)", tail: d.d.keepTail("uid")}, len(part))
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return 0, fmt.Errorf("upsert users: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("upsert users: %w", err)
		}
		created += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("upsert users: %w", err)
	}
	return created, nil
}

// GetUsers implements Store. With replicas, the users a replica does not
// have are looked up again on the primary, so a user created a moment ago
// is found even while the replica lags.
func (s *SQLStore) GetUsers(ctx context.Context, uids []string) ([]User, error) {
	var want []string
	asked := make(map[string]bool, len(uids))
	for _, u := range uids {
		if !asked[u] && ids.ValidUID(u) { // a malformed uid cannot exist
			asked[u] = true
			want = append(want, u)
		}
	}
	found := make(map[string]User, len(want))
	d := s.dbs[0]
	if rep := d.replica(); rep != nil {
		if err := getUsers(ctx, rep, want, found); err != nil {
			s.stats.replicaMisses.Add(1)
			d.log.Debug("replica read failed", "db", d.name, "err", err)
		} else {
			s.stats.replicaReads.Add(1)
		}
		missing := want[:0:0]
		for _, u := range want {
			if _, ok := found[u]; !ok {
				missing = append(missing, u)
			}
		}
		want = missing
	}
	if err := getUsers(ctx, d.r, want, found); err != nil {
		return nil, err
	}
	var out []User
	for _, u := range uids {
		if f, ok := found[u]; ok {
			out = append(out, f)
			delete(found, u) // once, even if asked twice
		}
	}
	return out, nil
}

func getUsers(ctx context.Context, db *sql.DB, uids []string, found map[string]User) error {
	for lo := 0; lo < len(uids); lo += rowsPerStmt {
		part := uids[lo:min(lo+rowsPerStmt, len(uids))]
		args := make([]any, len(part))
		for i, u := range part {
			args[i] = u
		}
		q := "SELECT uid, name, created_at_ms FROM users WHERE uid IN (" + placeholders(len(part)) + ")"
		err := scanRows(db.QueryContext(ctx, q, args...))(func(rows *sql.Rows) error {
			var u User
			if err := rows.Scan(&u.UID, &u.Name, &u.CreatedAtMs); err != nil {
				return err
			}
			found[u.UID] = u
			return nil
		})
		if err != nil {
			return fmt.Errorf("get users: %w", err)
		}
	}
	return nil
}
