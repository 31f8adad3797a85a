package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gochat-im/gochat/pkg/ids"
)

// GetMessage implements Store.
func (s *SQLStore) GetMessage(ctx context.Context, conv, sender, clientMsgID string) (Message, bool, error) {
	if !ids.ValidConv(conv) {
		return Message{}, false, badConv(conv)
	}
	if !ids.ValidUID(sender) {
		return Message{}, false, badField("sender %q is not a valid user id", clip(sender))
	}
	if n := len(clientMsgID); n == 0 || n > MaxClientMsgID {
		return Message{}, false, badField("client_msg_id must be 1-%d bytes, got %d", MaxClientMsgID, n)
	}
	db, t := s.layout.Locate(conv)
	d := s.dbs[db]
	m := Message{ConvID: conv, Sender: sender, ClientMsgID: clientMsgID}
	var recalled int
	err := d.queryRow(ctx, d.r, d.t[t].getMsg, conv, sender, clientMsgID).
		Scan(&m.Seq, &m.Recipient, &m.ContentType, &m.Body, &m.CreatedAtMs, &recalled, &m.RefSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("get message of %s in %s: %w", sender, conv, err)
	}
	if recalled != 0 {
		m.Recalled, m.Body = true, ""
	}
	return m, true, nil
}

type cursorKey struct{ uid, conv string }

// UpdateCursors implements Store. The conversations' last_seq are read
// where they live (primaries), then, per database of the users' list rows,
// one transaction raises the cursors with one statement per table and
// reads them back. Values above last_seq are cut to it (so a conversation
// with no message keeps zeros); a lower value than the stored one changes
// nothing. Negative values are BadField.
//
// A group's cursors move only for its members: a removed member keeps
// the list row (and its cursors, for a return to the group), so the
// memberships are read first, where the groups live (primaries), and the
// updates of non-members are answered with zeros like those of users
// without a row. The read is not in the update's transaction (the tables
// are sharded by group and by user): a removal that commits between the
// two lets that one update through.
func (s *SQLStore) UpdateCursors(ctx context.Context, ups []CursorUpdate) ([]CursorUpdate, error) {
	want := make(map[cursorKey]*CursorUpdate)
	for _, u := range ups {
		if u.DeliveredSeq < 0 || u.ReadSeq < 0 {
			return nil, badField("cursors of %q in %q are negative", clip(u.UID), clip(u.ConvID))
		}
		if !ids.ValidUID(u.UID) || !ids.ValidConv(u.ConvID) {
			continue // no list row can match: answered with zeros
		}
		k := cursorKey{u.UID, u.ConvID}
		if w := want[k]; w != nil {
			w.DeliveredSeq, w.ReadSeq = max(w.DeliveredSeq, u.DeliveredSeq), max(w.ReadSeq, u.ReadSeq)
			continue
		}
		c := u
		want[k] = &c
	}
	out := make([]CursorUpdate, len(ups))
	for i, u := range ups {
		out[i] = CursorUpdate{UID: u.UID, ConvID: u.ConvID}
	}
	if err := s.dropNonMembers(ctx, want); err != nil {
		return nil, fmt.Errorf("update cursors: %w", err)
	}
	if len(want) == 0 {
		return out, nil
	}
	convs := make([]string, 0, len(want))
	for k := range want {
		convs = append(convs, k.conv)
	}
	seqs, err := s.lastSeqs(ctx, slices.Compact(slices.Sorted(slices.Values(convs))), false)
	if err != nil {
		return nil, fmt.Errorf("update cursors: %w", err)
	}
	// Per database, the rows in table order, then (uid, conv) order, so
	// that concurrent updates lock rows in one order.
	per := make(map[int][]cursorRow)
	for k, w := range want {
		last := seqs[k.conv].last
		db, t := s.layout.Locate(k.uid)
		per[db] = append(per[db], cursorRow{table: t, key: k, delivered: min(w.DeliveredSeq, last), read: min(w.ReadSeq, last)})
	}
	got := make(map[cursorKey]CursorUpdate, len(want))
	var queued []*appendReq
	for db, rows := range per {
		d := s.dbs[db]
		if d.d.cursorsInCommit && d.gc != nil {
			r := &appendReq{ctx: ctx, cursors: rows, now: s.now().UnixMilli(), done: make(chan struct{})}
			if err := d.gc.submit(r); err != nil {
				return nil, fmt.Errorf("update cursors in %s: %w", d.name, err)
			}
			queued = append(queued, r)
			continue
		}
		sortCursorRows(rows)
		err := d.inTx(ctx, func(tx *sql.Tx) error { return d.setCursors(ctx, tx, rows, got) })
		if err != nil {
			return nil, fmt.Errorf("update cursors in %s: %w", d.name, err)
		}
	}
	for _, r := range queued {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err() // the update may still be written; it is idempotent
		}
		if r.err != nil {
			return nil, r.err
		}
		for _, c := range r.cursors {
			if v, ok := r.got[c.key]; ok {
				got[c.key] = v
			}
		}
	}
	for i := range out {
		if c, ok := got[cursorKey{out[i].UID, out[i].ConvID}]; ok {
			out[i] = c
		}
	}
	return out, nil
}

// dropNonMembers removes from want the updates of group conversations
// whose user is not a member of the group (dissolved groups keep their
// members).
func (s *SQLStore) dropNonMembers(ctx context.Context, want map[cursorKey]*CursorUpdate) error {
	var pairs []memberPair
	for k := range want {
		if g, ok := strings.CutPrefix(k.conv, "g:"); ok {
			pairs = append(pairs, memberPair{k.uid, g})
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	groups, err := s.memberGroups(ctx, pairs, false)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if !slices.ContainsFunc(groups[p.uid], func(g Group) bool { return g.ID == p.group }) {
			delete(want, cursorKey{p.uid, "g:" + p.group})
		}
	}
	return nil
}

// sortCursorRows sorts rows in table, then (uid, conv) order, so that
// concurrent updates lock rows in one order.
func sortCursorRows(rows []cursorRow) {
	slices.SortFunc(rows, func(a, b cursorRow) int {
		return cmp.Or(cmp.Compare(a.table, b.table), strings.Compare(a.key.uid, b.key.uid), strings.Compare(a.key.conv, b.key.conv))
	})
}

type cursorRow struct {
	table           int
	key             cursorKey
	delivered, read int64
}

// setCursors raises the cursors of rows (sorted by table) and records the
// values they hold afterwards in got (unless got is nil).
func (d *shardDB) setCursors(ctx context.Context, tx *sql.Tx, rows []cursorRow, got map[cursorKey]CursorUpdate) error {
	for lo := 0; lo < len(rows); {
		t := rows[lo].table
		hi := lo
		for hi < len(rows) && rows[hi].table == t {
			hi++
		}
		set := make([]any, 0, 4*(hi-lo))
		keys := make([]any, 0, 2*(hi-lo))
		for _, r := range rows[lo:hi] {
			set = append(set, r.key.uid, r.key.conv, r.delivered, r.read)
			keys = append(keys, r.key.uid, r.key.conv)
		}
		if err := d.execRows(ctx, tx, d.t[t].setCursors, 4, set, nil); err != nil {
			return err
		}
		if got == nil {
			lo = hi
			continue
		}
		err := d.queryEach(ctx, tx, d.t[t].getCursors, 2, keys, func(rs *sql.Rows) error {
			var c CursorUpdate
			if err := rs.Scan(&c.UID, &c.ConvID, &c.DeliveredSeq, &c.ReadSeq); err != nil {
				return err
			}
			got[cursorKey{c.UID, c.ConvID}] = c
			return nil
		})
		if err != nil {
			return err
		}
		lo = hi
	}
	return nil
}
