package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/gochat-im/gochat/pkg/ids"
)

// SQLStore is the Store over a SQL database (SQLite or MySQL); see the
// package doc. It is safe for concurrent use.
type SQLStore struct {
	w    *sql.DB // write transactions (SQLite: one connection)
	r    *sql.DB // plain reads (SQLite: query-only pool; MySQL: same as w)
	d    dialect
	opts Options
	log  *slog.Logger
	now  func() time.Time

	migrations []migration
	// Statements prepared once per connection, filled by prepare and only
	// read afterwards.
	ws map[string]*sql.Stmt // on w, used through tx.StmtContext
	rs map[string]*sql.Stmt // on r
}

// Queries used on every append or sync, prepared at open.
const (
	qLockConv   = "SELECT last_seq, updated_at_ms FROM conversations WHERE conv_id = ?"
	qFindMsg    = "SELECT seq, created_at_ms FROM messages WHERE conv_id = ? AND sender = ? AND client_msg_id = ?"
	qUpdateConv = "UPDATE conversations SET last_seq = ?, updated_at_ms = ? WHERE conv_id = ?"
	qLastSeq    = "SELECT last_seq FROM conversations WHERE conv_id = ?"
	qSync       = "SELECT seq, sender, recipient, client_msg_id, content_type, body, created_at_ms FROM messages" +
		" WHERE conv_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
	qListConvs = "SELECT uc.conv_id, uc.kind, uc.peer, c.last_seq, c.updated_at_ms" +
		" FROM user_conversations uc JOIN conversations c ON c.conv_id = uc.conv_id" +
		" WHERE uc.uid = ? ORDER BY c.updated_at_ms DESC, uc.conv_id ASC LIMIT ?"
)

// maxAttempts bounds how often an append is run again after a deadlock.
const maxAttempts = 5

// chunk is how many rows one multi-row statement carries.
const chunk = 500

func newSQLStore(w, r *sql.DB, d dialect, opts Options, log *slog.Logger) (*SQLStore, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	migs, err := loadMigrations(d.name)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SQLStore{w: w, r: r, d: d, opts: opts, log: log, now: time.Now, migrations: migs}, nil
}

// prepare prepares the hot statements. It needs the schema, so it runs
// after Migrate (or lazily: until then the maps are nil and queries go
// unprepared).
func (s *SQLStore) prepare(ctx context.Context) error {
	ws := map[string]*sql.Stmt{}
	rs := map[string]*sql.Stmt{}
	for _, q := range []string{s.d.insertConv, qLockConv + s.d.lockSuffix, s.d.insertMessage, qFindMsg + s.d.lockSuffix, qUpdateConv} {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		ws[q] = st
	}
	for _, q := range []string{qLastSeq, qSync, qListConvs} {
		st, err := s.r.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		rs[q] = st
	}
	s.ws, s.rs = ws, rs
	return nil
}

// Ready migrates the schema and prepares the statements: what a service
// calls once after Open.
func (s *SQLStore) Ready(ctx context.Context) error {
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	return s.prepare(ctx)
}

// Close closes the database handles.
func (s *SQLStore) Close() error {
	for _, m := range []map[string]*sql.Stmt{s.ws, s.rs} {
		for _, st := range m {
			_ = st.Close()
		}
	}
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// txStmt is one statement used repeatedly inside a transaction.
type txStmt struct {
	tx    *sql.Tx
	st    *sql.Stmt
	query string
}

func (s *SQLStore) txStmt(ctx context.Context, tx *sql.Tx, query string) txStmt {
	if p := s.ws[query]; p != nil {
		return txStmt{st: tx.StmtContext(ctx, p)}
	}
	return txStmt{tx: tx, query: query}
}

func (t txStmt) exec(ctx context.Context, args ...any) (sql.Result, error) {
	if t.st != nil {
		return t.st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, t.query, args...)
}

func (t txStmt) queryRow(ctx context.Context, args ...any) *sql.Row {
	if t.st != nil {
		return t.st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.query, args...)
}

func (s *SQLStore) readRow(ctx context.Context, query string, args ...any) *sql.Row {
	if p := s.rs[query]; p != nil {
		return p.QueryRowContext(ctx, args...)
	}
	return s.r.QueryRowContext(ctx, query, args...)
}

func (s *SQLStore) readRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if p := s.rs[query]; p != nil {
		return p.QueryContext(ctx, args...)
	}
	return s.r.QueryContext(ctx, query, args...)
}

// AppendMessages implements Store.
func (s *SQLStore) AppendMessages(ctx context.Context, items []AppendItem) ([]AppendResult, error) {
	results := make([]AppendResult, len(items))
	valid := make([]int, 0, len(items))
	for i := range items {
		if e := validateItem(&items[i], s.opts.MaxBody); e != nil {
			results[i] = AppendResult{ErrorCode: int32(e.Code), ErrorMessage: e.Msg}
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return results, nil
	}
	now := s.now().UnixMilli()
	for attempt := 1; ; attempt++ {
		err := s.appendTx(ctx, items, valid, results, now)
		if err == nil {
			return results, nil
		}
		if !s.d.retryable(err) || attempt == maxAttempts {
			return nil, fmt.Errorf("append messages: %w", err)
		}
		s.log.Debug("append retried", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("append messages: %w", ctx.Err())
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// convState is one conversation inside an append transaction.
type convState struct {
	startSeq int64 // last_seq when the transaction locked the row
	lastSeq  int64
	updated  int64
	senders  []string // senders of new messages, for group membership rows
}

type dedupKey struct{ conv, sender, cmid string }

// appendTx runs one attempt of AppendMessages. Lock order: conversation rows
// in ascending conv_id, all of them before any message is written.
func (s *SQLStore) appendTx(ctx context.Context, items []AppendItem, valid []int, results []AppendResult, now int64) error {
	tx, err := s.w.BeginTx(ctx, s.d.txOptions)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()

	convs := make(map[string]*convState)
	var names []string
	for _, i := range valid {
		if c := items[i].ConvID; convs[c] == nil {
			convs[c] = &convState{}
			names = append(names, c)
		}
	}
	sort.Strings(names)
	insConv := s.txStmt(ctx, tx, s.d.insertConv)
	lockConv := s.txStmt(ctx, tx, qLockConv+s.d.lockSuffix)
	for _, c := range names {
		if _, err := insConv.exec(ctx, c, convKind(c), now); err != nil {
			return fmt.Errorf("create conversation %s: %w", c, err)
		}
		st := convs[c]
		if err := lockConv.queryRow(ctx, c).Scan(&st.startSeq, &st.updated); err != nil {
			return fmt.Errorf("lock conversation %s: %w", c, err)
		}
		st.lastSeq = st.startSeq
	}

	insMsg := s.txStmt(ctx, tx, s.d.insertMessage)
	findMsg := s.txStmt(ctx, tx, qFindMsg+s.d.lockSuffix)
	first := make(map[dedupKey]int, len(valid))
	for _, i := range valid {
		it := &items[i]
		key := dedupKey{it.ConvID, it.Sender, it.ClientMsgID}
		if j, ok := first[key]; ok {
			results[i] = AppendResult{Seq: results[j].Seq, CreatedAtMs: results[j].CreatedAtMs, Duplicate: true}
			continue
		}
		first[key] = i
		st := convs[it.ConvID]
		created := it.CreatedAtMs
		if created == 0 {
			created = now
		}
		seq := st.lastSeq + 1
		res, err := insMsg.exec(ctx, it.ConvID, seq, it.Sender, it.Recipient, it.ClientMsgID, it.ContentType, it.Body, created)
		if err != nil {
			return fmt.Errorf("insert message %s/%d: %w", it.ConvID, seq, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 {
			st.lastSeq = seq
			st.updated = max(st.updated, created)
			if !ids.Member(it.ConvID, it.Sender) {
				st.senders = append(st.senders, it.Sender)
			}
			results[i] = AppendResult{Seq: seq, CreatedAtMs: created}
			continue
		}
		// Nothing inserted: the dedup key exists (the seq cannot, as the
		// conversation row is locked and last_seq is the highest seq).
		var orig AppendResult
		err = findMsg.queryRow(ctx, it.ConvID, it.Sender, it.ClientMsgID).Scan(&orig.Seq, &orig.CreatedAtMs)
		if errors.Is(err, sql.ErrNoRows) {
			return errInconsistent(it.ConvID, "seq %d is taken but last_seq is %d", seq, st.lastSeq)
		}
		if err != nil {
			return fmt.Errorf("find duplicate in %s: %w", it.ConvID, err)
		}
		orig.Duplicate = true
		results[i] = orig
	}

	upd := s.txStmt(ctx, tx, qUpdateConv)
	for _, c := range names {
		st := convs[c]
		if st.lastSeq == st.startSeq {
			continue // every item was a duplicate
		}
		if _, err := upd.exec(ctx, st.lastSeq, st.updated, c); err != nil {
			return fmt.Errorf("update conversation %s: %w", c, err)
		}
		if err := s.addMembers(ctx, tx, c, st, now); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// addMembers records who takes part in conversation c: both users of a
// one-to-one conversation when it gets its first message, and the senders
// of a group conversation.
func (s *SQLStore) addMembers(ctx context.Context, tx *sql.Tx, c string, st *convState, now int64) error {
	type row struct{ uid, peer string }
	var rows []row
	if a, b, ok := ids.ParseP2P(c); ok {
		if st.startSeq != 0 {
			return nil
		}
		rows = []row{{a, b}, {b, a}}
	} else {
		for _, u := range st.senders {
			rows = append(rows, row{uid: u})
		}
	}
	kind := convKind(c)
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		if seen[r.uid] {
			continue
		}
		seen[r.uid] = true
		if _, err := tx.ExecContext(ctx, s.d.insertUserConv, r.uid, c, kind, r.peer, now); err != nil {
			return fmt.Errorf("add %s to %s: %w", r.uid, c, err)
		}
	}
	return nil
}

func convKind(conv string) string {
	if strings.HasPrefix(conv, "p:") {
		return ids.KindP2P
	}
	return ids.KindGroup
}

// SyncMessages implements Store. It reads last_seq first and then only
// messages up to it: those are committed (they were written in the same
// transaction as last_seq), so a page never has a hole filled later.
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
	var res SyncResult
	err = s.readRow(ctx, qLastSeq, conv).Scan(&res.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return SyncResult{}, convNotFound(conv)
	}
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", conv, err)
	}
	if afterSeq >= res.LastSeq {
		return res, nil
	}
	rows, err := s.readRows(ctx, qSync, conv, afterSeq, res.LastSeq, limit)
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", conv, err)
	}
	defer rows.Close()
	res.Messages = make([]Message, 0, min(int64(limit), res.LastSeq-afterSeq))
	for rows.Next() {
		m := Message{ConvID: conv}
		if err := rows.Scan(&m.Seq, &m.Sender, &m.Recipient, &m.ClientMsgID, &m.ContentType, &m.Body, &m.CreatedAtMs); err != nil {
			return SyncResult{}, fmt.Errorf("sync %s: %w", conv, err)
		}
		res.Messages = append(res.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", conv, err)
	}
	last := afterSeq
	if n := len(res.Messages); n > 0 {
		last = res.Messages[n-1].Seq
	}
	res.HasMore = last < res.LastSeq
	return res, nil
}

// ListConversations implements Store.
func (s *SQLStore) ListConversations(ctx context.Context, uid string, limit int) ([]Conversation, error) {
	if !ids.ValidUID(uid) {
		return nil, badField("uid %q is not valid", clip(uid))
	}
	limit, err := convLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.readRows(ctx, qListConvs, uid, limit)
	if err != nil {
		return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
	}
	defer rows.Close()
	var out []Conversation
	for rows.Next() {
		var c Conversation
		if err := rows.Scan(&c.ConvID, &c.Kind, &c.Peer, &c.LastSeq, &c.UpdatedAtMs); err != nil {
			return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
	}
	return out, nil
}

// UpsertUsers implements Store.
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
	tx, err := s.w.BeginTx(ctx, s.d.txOptions)
	if err != nil {
		return 0, fmt.Errorf("upsert users: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	created := 0
	for len(todo) > 0 {
		part := todo[:min(chunk, len(todo))]
		todo = todo[len(part):]
		var q strings.Builder
		q.WriteString(s.d.insertUsersHead)
		args := make([]any, 0, 3*len(part))
		for i, u := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, u.UID, u.Name, u.CreatedAtMs)
		}
		q.WriteString(s.d.insertUsersTail)
		res, err := tx.ExecContext(ctx, q.String(), args...)
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

// GetUsers implements Store.
func (s *SQLStore) GetUsers(ctx context.Context, uids []string) ([]User, error) {
	found := make(map[string]User, len(uids))
	var want []string
	for _, u := range uids {
		if _, dup := found[u]; dup || !ids.ValidUID(u) {
			continue // a malformed uid cannot exist
		}
		found[u] = User{}
		want = append(want, u)
	}
	for len(want) > 0 {
		part := want[:min(chunk, len(want))]
		want = want[len(part):]
		q := "SELECT uid, name, created_at_ms FROM users WHERE uid IN (?" + strings.Repeat(", ?", len(part)-1) + ")"
		args := make([]any, len(part))
		for i, u := range part {
			args[i] = u
		}
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("get users: %w", err)
		}
		for rows.Next() {
			var u User
			if err := rows.Scan(&u.UID, &u.Name, &u.CreatedAtMs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("get users: %w", err)
			}
			found[u.UID] = u
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("get users: %w", err)
		}
	}
	var out []User
	seen := make(map[string]bool, len(found))
	for _, u := range uids {
		if f, ok := found[u]; ok && f.UID != "" && !seen[u] {
			seen[u] = true
			out = append(out, f)
		}
	}
	return out, nil
}
