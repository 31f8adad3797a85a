package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Rows per multi-row statement, small enough to keep one statement's work
// short.
const (
	rowsPerStmt = 500
	// maxPreparedRows is the most rows (or keys) of a prepared write
	// statement; see shardDB.writes.
	maxPreparedRows = 64
	keysPerQuery    = 100 // lookups by key (an IN list, or OR terms)
)

// indexRow is one user_conversations row: uid takes part in conv.
type indexRow struct {
	uid, conv, kind, peer string
	table                 int
	created               int64
}

// convState is one conversation inside an append transaction.
type convState struct {
	table        int
	kind         string
	found        bool
	startSeq     int64 // last_seq when the transaction locked the row
	startUpdated int64
	lastSeq      int64
	updated      int64
}

type dedupKey struct{ conv, sender, cmid string }

type msgRow struct {
	it       *AppendItem
	seq      int64
	created  int64
	recalled bool // recalled later in the same batch: stored with an empty body
}

// appendTx runs one attempt of the transaction of a batch: the conversation
// list rows of every call, then the messages, in one transaction of this
// database. Lock order: the list rows (sorted), then per table in ascending
// table order the existing conversation rows in ascending conv_id and then
// the new ones in ascending conv_id, all of them before any message is
// written; the seq of a message is last_seq+1 of its locked row, so seqs
// are 1, 2, 3 ... per conversation with no gap and no reuse.
//
// Items that depend on stored state are judged under those locks (see
// checks): a group message needs an active group with the sender as a
// member, a recall a message it may recall. A group's membership changes
// lock the same conversation row, so the answer cannot change before the
// commit. A refused item gets its error in its result and is not stored;
// the rest of the batch is unaffected. Deduplication comes first: a
// retransmission is answered as a duplicate even if it would be refused
// now (a recall that was applied, a sender removed since).
//
// Retransmissions are rare, so the messages are first inserted on the
// assumption that none of them is stored yet: the unique key on (conv_id,
// sender, client_msg_id) refuses the statement if one is. Only then are the
// stored ones looked up and the messages numbered again without them. On
// MySQL the statements are undone to a savepoint; on SQLite the refused
// statement has rolled the whole transaction back (see
// dialect.conflictRollsBack) and it runs again, looking up every message
// first. (A conversation that had no message when it was locked cannot
// hold a duplicate, and no other transaction can add one while it is
// locked.)
func (d *shardDB) appendTx(ctx context.Context, reqs []*appendReq) error {
	if d.testFail != nil {
		if err := d.testFail(reqs); err != nil {
			return err
		}
	}
	err := d.appendTxOnce(ctx, reqs, false)
	if errors.Is(err, errLookUpFirst) {
		d.stats.dedupLookups.Add(1)
		err = d.appendTxOnce(ctx, reqs, true)
	}
	return err
}

// errLookUpFirst: the transaction was rolled back by a duplicate and must
// run again with every message looked up before it is inserted.
var errLookUpFirst = errors.New("store: a message of the batch is stored already")

// appendTxOnce runs the append transaction; lookUp looks up every message
// of a conversation that has any before inserting.
func (d *shardDB) appendTxOnce(ctx context.Context, reqs []*appendReq, lookUp bool) error {
	tx, err := d.w.BeginTx(ctx, d.d.txOptions)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if d.d.uninterrupted {
		ctx = context.WithoutCancel(ctx)
	}
	if err := d.writeIndex(ctx, tx, reqs); err != nil {
		return err
	}

	convs := make(map[string]*convState)
	perTable := make([][]string, len(d.t))
	for _, r := range reqs {
		for i := range r.items {
			c := r.items[i].ConvID
			if convs[c] == nil {
				_, t := d.layout.Locate(c)
				convs[c] = &convState{table: t, kind: convKind(c)}
				perTable[t] = append(perTable[t], c)
			}
		}
	}
	now := reqs[0].now
	oldConv := false
	for t, names := range perTable {
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		if err := d.lockConvs(ctx, tx, t, names, convs, now); err != nil {
			return err
		}
		for _, c := range names {
			oldConv = oldConv || convs[c].startSeq > 0
		}
	}

	chk, err := d.loadChecks(ctx, tx, reqs, convs)
	if err != nil {
		return err
	}
	// Items that may be refused are looked up first: if one is a
	// retransmission it must get its original answer, not the refusal.
	var stored map[dedupKey]prior
	switch {
	case oldConv && lookUp:
		if stored, err = d.findStored(ctx, tx, reqs, convs, nil); err != nil {
			return err
		}
	case oldConv && chk.mayRefuse(reqs, convs):
		if stored, err = d.findStored(ctx, tx, reqs, convs, func(it *AppendItem) bool { return chk.refusable(it, convs[it.ConvID]) }); err != nil {
			return err
		}
	}
	inserts, marks := number(reqs, convs, stored, len(d.t), chk)
	if d.d.conflictRollsBack {
		err = d.insertMessages(ctx, tx, inserts)
		if err != nil && oldConv && !lookUp && d.d.duplicate(err) {
			return errLookUpFirst
		}
		if err != nil {
			return err
		}
		return d.finishAppend(ctx, tx, reqs, convs, perTable, marks)
	}
	// A refused statement changes nothing, so one INSERT needs no
	// savepoint to be undone; several do.
	savepoint := oldConv && d.insertStatements(inserts) > 1
	if savepoint {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT gochat_messages"); err != nil {
			return err
		}
	}
	err = d.insertMessages(ctx, tx, inserts)
	if err != nil && oldConv && d.d.duplicate(err) {
		d.stats.dedupLookups.Add(1)
		if savepoint {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT gochat_messages"); err != nil {
				return err
			}
		}
		stored, ferr := d.findStored(ctx, tx, reqs, convs, nil)
		if ferr != nil {
			return ferr
		}
		inserts, marks = number(reqs, convs, stored, len(d.t), chk)
		err = d.insertMessages(ctx, tx, inserts)
	}
	if err != nil {
		return err
	}
	return d.finishAppend(ctx, tx, reqs, convs, perTable, marks)
}

// finishAppend writes what follows the messages of an append (recall
// marks, the conversations' last seqs, the senders' cursors) and commits.
func (d *shardDB) finishAppend(ctx context.Context, tx *sql.Tx, reqs []*appendReq, convs map[string]*convState, perTable [][]string, marks []recallMark) error {
	if err := d.markRecalled(ctx, tx, marks); err != nil {
		return err
	}
	for t, names := range perTable {
		if err := d.saveConvs(ctx, tx, t, names, convs); err != nil {
			return err
		}
	}
	own := d.senderCursors(reqs)
	if err := d.writeCursors(ctx, tx, reqs, own); err != nil {
		return err
	}
	return tx.Commit()
}

// senderCursors returns the cursor rows that raise each sender's delivered
// and read cursors to the seq of the message stored for them (what you
// wrote you have read) when the sender's list row lives in this database
// and the dialect writes cursors in the append transaction
// (cursorsInCommit); the others are left in each call's remote for
// AppendMessages to write after the commit. (On MySQL, locking list rows
// after the conversation rows could deadlock with a transaction that
// locked them the other way round.) A retransmission raises them too:
// harmless when its original did, and it repairs a raise lost to a crash
// after the original's commit.
func (d *shardDB) senderCursors(reqs []*appendReq) []cursorRow {
	var own []cursorRow
	for _, r := range reqs {
		r.remote = r.remote[:0]
		for k := range r.items {
			res := r.res[k]
			it := &r.items[k]
			if res.ErrorCode != 0 || res.Seq == 0 || it.ByOperator {
				continue
			}
			db, t := d.layout.Locate(it.Sender)
			c := cursorRow{table: t, key: cursorKey{it.Sender, it.ConvID}, delivered: res.Seq, read: res.Seq}
			if db == d.index && d.d.cursorsInCommit {
				own = append(own, c)
			} else {
				r.remote = append(r.remote, c)
			}
		}
	}
	return own
}

// writeCursors raises the cursors the batch's UpdateCursors calls carry and
// the senders' own (own), merged (the highest values per list row) and in
// table and key order, and gives every UpdateCursors call the values they
// hold afterwards.
func (d *shardDB) writeCursors(ctx context.Context, tx *sql.Tx, reqs []*appendReq, own []cursorRow) error {
	var (
		rows []cursorRow
		at   map[cursorKey]int
	)
	merge := func(cs []cursorRow) {
		for _, c := range cs {
			if at == nil {
				at = make(map[cursorKey]int)
			}
			if i, ok := at[c.key]; ok {
				rows[i].delivered, rows[i].read = max(rows[i].delivered, c.delivered), max(rows[i].read, c.read)
				continue
			}
			at[c.key] = len(rows)
			rows = append(rows, c)
		}
	}
	for _, r := range reqs {
		merge(r.cursors)
	}
	merge(own)
	if len(rows) == 0 {
		return nil
	}
	sortCursorRows(rows)
	// The values are read back only for UpdateCursors calls, which answer
	// with them.
	var got map[cursorKey]CursorUpdate
	for _, r := range reqs {
		if len(r.cursors) > 0 {
			got = make(map[cursorKey]CursorUpdate, len(rows))
			break
		}
	}
	if err := d.setCursors(ctx, tx, rows, got); err != nil {
		return fmt.Errorf("update cursors in %s: %w", d.name, err)
	}
	for _, r := range reqs {
		if len(r.cursors) > 0 {
			r.got = got
		}
	}
	return nil
}

// number gives the batch's messages their seqs, in batch order, and fills
// each call's results: a message found in stored, or earlier in the batch,
// is a duplicate and gets the original's seq; an item chk refuses gets its
// error. It returns the rows to insert per table and the stored messages
// the batch recalls (those it inserts itself are marked in their rows).
// It changes nothing but convs' running state and the results, so it can
// be run again with more stored messages.
func number(reqs []*appendReq, convs map[string]*convState, stored map[dedupKey]prior, tables int, chk *checks) ([][]msgRow, []recallMark) {
	for _, st := range convs {
		st.lastSeq, st.updated = st.startSeq, st.startUpdated
	}
	inserts := make([][]msgRow, tables)
	assigned := make(map[dedupKey]prior)
	// Messages numbered so far, for recalls later in the batch.
	type pos struct{ table, i int }
	numbered := make(map[seqKey]pos)
	var marks []recallMark
	for _, r := range reqs {
		r.res = make([]AppendResult, len(r.items))
		for k := range r.items {
			it := &r.items[k]
			key := dedupKey{it.ConvID, it.Sender, it.ClientMsgID}
			if o, ok := stored[key]; ok {
				r.res[k] = o.answer(it)
				continue
			}
			if o, ok := assigned[key]; ok {
				r.res[k] = o.answer(it)
				continue
			}
			st := convs[it.ConvID]
			if e := chk.refuse(it, st); e != nil {
				r.res[k] = AppendResult{ErrorCode: int32(e.Code), ErrorMessage: e.Msg}
				continue
			}
			created := it.CreatedAtMs
			if created == 0 {
				created = r.now
			}
			if it.RecallSeq > 0 {
				tk := seqKey{it.ConvID, it.RecallSeq}
				var tg target
				p, inBatch := numbered[tk]
				if inBatch {
					row := &inserts[p.table][p.i]
					tg = target{sender: row.it.Sender, created: row.created, recalled: row.recalled, event: row.it.RecallSeq > 0, found: true}
				} else {
					tg = chk.targets[tk]
					tg.recalled = tg.recalled || slices.Contains(marks, recallMark{st.table, tk})
				}
				if e := tg.judge(it, created); e != nil {
					r.res[k] = AppendResult{ErrorCode: int32(e.Code), ErrorMessage: e.Msg}
					continue
				}
				if inBatch {
					inserts[p.table][p.i].recalled = true
				} else {
					marks = append(marks, recallMark{st.table, tk})
				}
			}
			st.lastSeq++
			st.updated = max(st.updated, created)
			assigned[key] = prior{seq: st.lastSeq, created: created, refSeq: it.RecallSeq}
			r.res[k] = AppendResult{Seq: st.lastSeq, CreatedAtMs: created}
			numbered[seqKey{it.ConvID, st.lastSeq}] = pos{st.table, len(inserts[st.table])}
			inserts[st.table] = append(inserts[st.table], msgRow{it: it, seq: st.lastSeq, created: created})
		}
	}
	return inserts, marks
}

// prior is the message that holds an item's dedup key: stored before, or
// numbered earlier in the same batch.
type prior struct{ seq, created, refSeq int64 }

// answer is the result of an item whose dedup key p holds. A
// retransmission gets the original's ack. An item of another kind under
// the same key (a recall whose cmid the sender used for a message, or the
// other way round) is not a retransmission but a client reusing a cmid:
// the original's ack would tell it that something happened which did not.
func (p prior) answer(it *AppendItem) AppendResult {
	if p.refSeq != it.RecallSeq {
		return AppendResult{ErrorCode: int32(errcode.BadField),
			ErrorMessage: fmt.Sprintf("cmid %q is taken by message %d of %s; use a new cmid", it.ClientMsgID, p.seq, it.ConvID)}
	}
	return AppendResult{Seq: p.seq, CreatedAtMs: p.created, Duplicate: true}
}

// writeIndex inserts the conversation-list rows of the batch that are not
// there yet, sorted so that concurrent transactions lock them in one order.
func (d *shardDB) writeIndex(ctx context.Context, tx *sql.Tx, reqs []*appendReq) error {
	var rows []indexRow
	for _, r := range reqs {
		rows = append(rows, r.index...)
	}
	if len(rows) == 0 {
		return nil
	}
	slices.SortFunc(rows, func(a, b indexRow) int {
		return cmp.Or(cmp.Compare(a.table, b.table), strings.Compare(a.uid, b.uid), strings.Compare(a.conv, b.conv))
	})
	rows = slices.CompactFunc(rows, func(a, b indexRow) bool { return a.table == b.table && a.uid == b.uid && a.conv == b.conv })
	for lo := 0; lo < len(rows); {
		t := rows[lo].table
		hi := lo
		for hi < len(rows) && rows[hi].table == t {
			hi++
		}
		args := make([]any, 0, 5*(hi-lo))
		for _, r := range rows[lo:hi] {
			args = append(args, r.uid, r.conv, r.kind, r.peer, r.created)
		}
		if err := d.execRows(ctx, tx, d.t[t].insIndex, 5, args, nil); err != nil {
			return fmt.Errorf("add conversation list rows to %s.%s: %w", d.name, d.t[t].uconvs, err)
		}
		lo = hi
	}
	return nil
}

// lockConvs locks and reads the conversation rows of names (sorted, all in
// table t), creating the missing ones: the existing rows are locked first,
// in ascending order, with one locking read; the missing ones are then
// inserted (a concurrent transaction may be creating the same row: the
// insert waits for it and keeps what it committed) and read again, locked.
// In the steady state, when every conversation exists, that is one query.
func (d *shardDB) lockConvs(ctx context.Context, tx *sql.Tx, t int, names []string, convs map[string]*convState, now int64) error {
	ts := d.t[t]
	read := func(names []string) error {
		args := make([]any, len(names))
		for i, c := range names {
			args[i] = c
		}
		err := d.queryEach(ctx, tx, ts.lockConv, 1, args, func(rows *sql.Rows) error {
			var c string
			var last, updated int64
			if err := rows.Scan(&c, &last, &updated); err != nil {
				return err
			}
			if st := convs[c]; st != nil {
				st.found, st.startSeq, st.startUpdated = true, last, updated
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("lock conversations in %s.%s: %w", d.name, ts.convs, err)
		}
		return nil
	}
	if err := read(names); err != nil {
		return err
	}
	var missing []string
	var args []any
	for _, c := range names {
		if !convs[c].found {
			if convs[c].kind == ids.KindGroup {
				continue // made by CreateGroup; a message does not create a group
			}
			missing = append(missing, c)
			args = append(args, c, convs[c].kind, now)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := d.execRows(ctx, tx, ts.insConv, 3, args, nil); err != nil {
		return fmt.Errorf("create conversations in %s.%s: %w", d.name, ts.convs, err)
	}
	if err := read(missing); err != nil {
		return err
	}
	for _, c := range missing {
		if !convs[c].found {
			return errInconsistent(c, "its row is missing after it was created")
		}
	}
	return nil
}

// findStored returns the messages already stored under the dedup keys of
// the batch (of its items for which want is true, or all when want is nil).
// The conversations are locked, so no other transaction can add one
// meanwhile. A conversation that had no message cannot hold any.
func (d *shardDB) findStored(ctx context.Context, tx *sql.Tx, reqs []*appendReq, convs map[string]*convState, want func(*AppendItem) bool) (map[dedupKey]prior, error) {
	perTable := make([][]any, len(d.t))
	seen := make(map[dedupKey]bool)
	for _, r := range reqs {
		for k := range r.items {
			it := &r.items[k]
			st := convs[it.ConvID]
			key := dedupKey{it.ConvID, it.Sender, it.ClientMsgID}
			if st.startSeq == 0 || seen[key] || (want != nil && !want(it)) {
				continue
			}
			seen[key] = true
			perTable[st.table] = append(perTable[st.table], key.conv, key.sender, key.cmid)
		}
	}
	found := make(map[dedupKey]prior)
	for t, args := range perTable {
		if len(args) == 0 {
			continue
		}
		err := d.queryEach(ctx, tx, d.t[t].findMsg, 3, args,
			func(rows *sql.Rows) error {
				var k dedupKey
				var p prior
				if err := rows.Scan(&k.conv, &k.sender, &k.cmid, &p.seq, &p.created, &p.refSeq); err != nil {
					return err
				}
				found[k] = p
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("look up stored messages in %s.%s: %w", d.name, d.t[t].msgs, err)
		}
	}
	return found, nil
}

// insertMessages writes the new messages, per table.
func (d *shardDB) insertMessages(ctx context.Context, tx *sql.Tx, inserts [][]msgRow) error {
	for t, rows := range inserts {
		if len(rows) == 0 {
			continue
		}
		args := make([]any, 0, msgCols*len(rows))
		for _, m := range rows {
			it := m.it
			body, recalled := it.Body, 0
			if m.recalled {
				body, recalled = "", 1
			}
			args = append(args, it.ConvID, m.seq, it.Sender, it.Recipient, it.ClientMsgID, it.ContentType, body, m.created, recalled, it.RecallSeq)
		}
		if err := d.execRows(ctx, tx, d.t[t].insMsg, msgCols, args, msgSize(rows)); err != nil {
			return fmt.Errorf("insert messages into %s.%s: %w", d.name, d.t[t].msgs, err)
		}
	}
	return nil
}

// msgCols is the number of values insertMessages writes per message.
const msgCols = 10

// insertStatements is how many statements insertMessages will run.
func (d *shardDB) insertStatements(inserts [][]msgRow) int {
	n := 0
	for t, rows := range inserts {
		for lo := 0; lo < len(rows); n++ {
			lo = d.chunkEnd(d.t[t].insMsg, lo, len(rows), msgSize(rows))
		}
	}
	return n
}

// msgSize estimates the bytes a message adds to an INSERT: escaping can
// double a value's bytes.
func msgSize(rows []msgRow) func(int) int {
	return func(i int) int {
		it := rows[i].it
		return 2*(len(it.ConvID)+len(it.Sender)+len(it.Recipient)+len(it.ClientMsgID)+len(it.ContentType)+len(it.Body)) + 80
	}
}

// saveConvs writes the new last_seq and updated_at_ms of the conversations
// of table t that got messages.
func (d *shardDB) saveConvs(ctx context.Context, tx *sql.Tx, t int, names []string, convs map[string]*convState) error {
	var args []any
	for _, c := range names {
		if st := convs[c]; st.lastSeq != st.startSeq {
			args = append(args, c, st.lastSeq, st.updated)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := d.execRows(ctx, tx, d.t[t].saveConv, 3, args, nil); err != nil {
		return fmt.Errorf("update conversations in %s.%s: %w", d.name, d.t[t].convs, err)
	}
	return nil
}

// execRows runs the INSERT q for args, ncols values per row, in multi-row
// statements of at most rowsPerStmt rows and, when size estimates a row's
// bytes, at most maxStmtBytes. Few statements mean few round trips (MySQL)
// and little per-statement overhead (SQLite).
func (d *shardDB) execRows(ctx context.Context, tx *sql.Tx, q rowSQL, ncols int, args []any, size func(row int) int) error {
	n := len(args) / ncols
	for lo := 0; lo < n; {
		hi := d.chunkEnd(q, lo, n, size)
		text, a := values(q, hi-lo), args[lo*ncols:hi*ncols]
		var err error
		if st := d.writes[text]; st != nil {
			_, err = tx.StmtContext(ctx, st).ExecContext(ctx, a...)
		} else {
			d.unprepared(text)
			_, err = tx.ExecContext(ctx, text, a...)
		}
		if err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// chunkEnd returns the end of the statement that starts at row lo of n.
// With prepared write statements (d.writes), statements have a power of
// two rows up to maxPreparedRows, the sizes prepared.
func (d *shardDB) chunkEnd(q rowSQL, lo, n int, size func(row int) int) int {
	limit := rowsPerStmt
	if d.writes != nil {
		limit = maxPreparedRows
	}
	hi, bytes := lo, len(q.head)
	for hi < n && hi-lo < limit {
		if size != nil {
			s := size(hi)
			if hi > lo && bytes+s > d.maxStmtBytes {
				break
			}
			bytes += s
		}
		hi++
	}
	if d.writes != nil {
		hi = lo + floorPow2(hi-lo)
	}
	return hi
}

// unprepared tells a test that a statement of the append path was sent
// as text.
func (d *shardDB) unprepared(text string) {
	if d.testUnprepared != nil {
		d.testUnprepared(text)
	}
}

// floorPow2 is the largest power of two not above n (n >= 1).
func floorPow2(n int) int { return 1 << (bits.Len(uint(n)) - 1) }

// querier is a transaction or a pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryEach runs q for keys of ncols values each, keysPerQuery keys per
// query, and calls each for every row.
//
// In a write transaction with prepared write statements (d.writes), a
// query has a power of two keys up to maxPreparedRows and runs prepared.
func (d *shardDB) queryEach(ctx context.Context, db querier, q keySQL, ncols int, args []any, each func(*sql.Rows) error) error {
	tx, ok := db.(*sql.Tx)
	if !ok || d.writes == nil {
		return queryKeys(ctx, db, q, nil, ncols, args, each)
	}
	n := len(args) / ncols
	for lo := 0; lo < n; {
		k := floorPow2(min(n-lo, maxPreparedRows))
		text, a := q.head+q.join(k)+q.tail, args[lo*ncols:(lo+k)*ncols]
		var err error
		if st := d.writes[text]; st != nil {
			err = scanRows(tx.StmtContext(ctx, st).QueryContext(ctx, a...))(each)
		} else {
			d.unprepared(text)
			err = scanRows(tx.QueryContext(ctx, text, a...))(each)
		}
		if err != nil {
			return err
		}
		lo += k
	}
	return nil
}

// queryKeys runs q with the arguments first (placed before the key
// condition) and then keys of ncols values each, keysPerQuery keys per
// query, and calls each for every row.
func queryKeys(ctx context.Context, db querier, q keySQL, first []any, ncols int, args []any, each func(*sql.Rows) error) error {
	n := len(args) / ncols
	for lo := 0; lo < n; lo += keysPerQuery {
		hi := min(lo+keysPerQuery, n)
		a := append(first[:len(first):len(first)], args[lo*ncols:hi*ncols]...)
		if err := scanRows(db.QueryContext(ctx, q.head+q.join(hi-lo)+q.tail, a...))(each); err != nil {
			return err
		}
	}
	return nil
}

// inList is a condition "col IN (?, ...)" for k keys.
func inList(col string) func(k int) string {
	return func(k int) string { return col + " IN (" + placeholders(k) + ")" }
}

// orTerms is term repeated for k keys, joined by OR.
func orTerms(term string) func(k int) string {
	return func(k int) string {
		var b strings.Builder
		for i := range k {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString(term)
		}
		return b.String()
	}
}

// values builds q for n rows.
func values(q rowSQL, n int) string {
	sep := q.sep
	if sep == "" {
		sep = ", "
	}
	var b strings.Builder
	b.Grow(len(q.head) + n*(len(q.tuple)+len(sep)) + len(q.tail))
	b.WriteString(q.head)
	for i := range n {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(q.tuple)
	}
	b.WriteString(q.tail)
	return b.String()
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return "?" + strings.Repeat(", ?", n-1)
}

// scanRows adapts a query's result to a per-row callback, closing the rows
// and reporting their error: scanRows(db.Query(...))(func(r) error {...}).
func scanRows(rows *sql.Rows, err error) func(func(*sql.Rows) error) error {
	return func(each func(*sql.Rows) error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

func convKind(conv string) string {
	if strings.HasPrefix(conv, "p:") {
		return ids.KindP2P
	}
	return ids.KindGroup
}
