package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/gochat-im/gochat/pkg/ids"
)

// A user's conversations are found through the user's list rows
// (user_conversations, placed by uid), then read where each conversation
// lives. A list row of a one-to-one conversation is exact: it is written
// before (or with) the conversation's first message and never removed. A
// list row of kind "group" is only a hint: it is written before the user
// joins and kept when the user leaves (with the user's cursors, for a
// rejoin), so it outlives a failed, undone or ended membership; every read
// below keeps a group only if group_members (the truth, in the group's own
// database) has the user.

// place is a database and a table within it.
type place struct{ db, table int }

// memberPair is a user and a group the user may be a member of.
type memberPair struct{ uid, group string }

// ListConversations implements Store. The list is read where the user's
// rows live (the database and table of the uid), then each conversation's
// last_seq and time, and each group's name and the user's membership, where
// they live; replicas serve all of it when configured, so the answer may
// lag the primaries by the replication delay (SyncMessages never does). A
// one-to-one conversation is listed once it has a message, a group as soon
// as the user is a member (it stays listed after it is dissolved).
func (s *SQLStore) ListConversations(ctx context.Context, uid string, limit int) ([]Conversation, error) {
	if !ids.ValidUID(uid) {
		return nil, badField("uid %q is not valid", clip(uid))
	}
	limit, err := convLimit(limit)
	if err != nil {
		return nil, err
	}
	var out []Conversation
	if s.layout == (Layout{1, 1}) {
		d := s.dbs[0]
		err := s.readAny(d, func(db *sql.DB) error {
			out = out[:0]
			return scanRows(d.query(ctx, db, listJoin, uid, limit))(func(rows *sql.Rows) error {
				var c Conversation
				if err := rows.Scan(&c.ConvID, &c.Kind, &c.Peer, &c.LastSeq, &c.UpdatedAtMs, &c.DeliveredSeq, &c.ReadSeq, &c.Name); err != nil {
					return err
				}
				out = append(out, c)
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
		}
		for i := range out {
			out[i].Unread = max(0, out[i].LastSeq-out[i].ReadSeq)
		}
		return out, nil
	}

	udb, ut := s.layout.Locate(uid)
	d := s.dbs[udb]
	var list []Conversation
	err = s.readAny(d, func(db *sql.DB) error {
		list = list[:0]
		return scanRows(d.query(ctx, db, d.t[ut].listIndex, uid))(func(rows *sql.Rows) error {
			var c Conversation
			if err := rows.Scan(&c.ConvID, &c.Kind, &c.Peer, &c.DeliveredSeq, &c.ReadSeq); err != nil {
				return err
			}
			list = append(list, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
	}
	convs := make([]string, 0, len(list))
	var pairs []memberPair
	for _, c := range list {
		convs = append(convs, c.ConvID)
		if c.Kind == ids.KindGroup {
			pairs = append(pairs, memberPair{uid, strings.TrimPrefix(c.ConvID, "g:")})
		}
	}
	seqs, err := s.lastSeqs(ctx, convs, true)
	if err != nil {
		return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
	}
	groups, err := s.memberGroups(ctx, pairs, true)
	if err != nil {
		return nil, fmt.Errorf("list conversations of %s: %w", uid, err)
	}
	names := make(map[string]string)
	for _, g := range groups[uid] {
		names["g:"+g.ID] = g.Name
	}
	for _, c := range list {
		v, ok := seqs[c.ConvID]
		if !ok {
			continue
		}
		if c.Kind == ids.KindGroup {
			name, member := names[c.ConvID]
			if !member {
				continue
			}
			c.Name = name
		} else if v.last == 0 {
			continue
		}
		c.LastSeq, c.UpdatedAtMs = v.last, v.updated
		c.Unread = max(0, c.LastSeq-c.ReadSeq)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Conversation) int {
		return cmp.Or(cmp.Compare(b.UpdatedAtMs, a.UpdatedAtMs), strings.Compare(a.ConvID, b.ConvID))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

type seqTime struct{ last, updated int64 }

// lastSeqs reads the conversations rows of convs where they live: from a
// replica when lag is allowed, else from the primary.
func (s *SQLStore) lastSeqs(ctx context.Context, convs []string, lag bool) (map[string]seqTime, error) {
	byPlace := make(map[place][]any)
	for _, c := range convs {
		db, t := s.layout.Locate(c)
		byPlace[place{db, t}] = append(byPlace[place{db, t}], c)
	}
	found := make(map[string]seqTime, len(convs))
	for p, keys := range byPlace {
		d := s.dbs[p.db]
		read := func(db *sql.DB) error {
			return d.queryEach(ctx, db, d.t[p.table].lastSeqs, 1, keys, func(rows *sql.Rows) error {
				var c string
				var v seqTime
				if err := rows.Scan(&c, &v.last, &v.updated); err != nil {
					return err
				}
				found[c] = v
				return nil
			})
		}
		if err := s.read(d, lag, read); err != nil {
			return nil, fmt.Errorf("read conversations in %s.%s: %w", d.name, d.t[p.table].convs, err)
		}
	}
	return found, nil
}

// LastSeqs implements Store, reading the primaries.
func (s *SQLStore) LastSeqs(ctx context.Context, convs []string) (map[string]int64, error) {
	valid := make([]string, 0, len(convs))
	for _, c := range convs {
		if ids.ValidConv(c) {
			valid = append(valid, c)
		}
	}
	found, err := s.lastSeqs(ctx, valid, false)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(found))
	for c, v := range found {
		out[c] = v.last
	}
	return out, nil
}

// memberGroups returns, per user, the groups of pairs the user is a member
// of (dissolved ones included), read where each group lives: from a replica
// when lag is allowed, else from the primary.
func (s *SQLStore) memberGroups(ctx context.Context, pairs []memberPair, lag bool) (map[string][]Group, error) {
	byPlace := make(map[place][]any)
	for _, p := range pairs {
		db, t := s.layout.Locate("g:" + p.group)
		byPlace[place{db, t}] = append(byPlace[place{db, t}], p.group, p.uid)
	}
	out := make(map[string][]Group)
	for p, keys := range byPlace {
		d := s.dbs[p.db]
		var found []memberGroup
		read := func(db *sql.DB) error {
			found = found[:0]
			return d.queryEach(ctx, db, d.t[p.table].userGroups, 2, keys, func(rows *sql.Rows) error {
				var m memberGroup
				if err := rows.Scan(&m.uid, &m.g.ID, &m.g.Name, &m.g.Owner, &m.g.CreatedAtMs, &m.g.DissolvedAtMs, &m.g.MemberCount); err != nil {
					return err
				}
				found = append(found, m)
				return nil
			})
		}
		if err := s.read(d, lag, read); err != nil {
			return nil, fmt.Errorf("read groups in %s.%s: %w", d.name, d.t[p.table].groups, err)
		}
		for _, m := range found {
			out[m.uid] = append(out[m.uid], m.g)
		}
	}
	for _, gs := range out {
		slices.SortFunc(gs, func(a, b Group) int { return strings.Compare(a.ID, b.ID) })
	}
	return out, nil
}

type memberGroup struct {
	uid string
	g   Group
}

// listRow is one row of a user's list, as the batch reads need it.
type listRow struct{ uid, conv, kind string }

// listRowsOf reads the list rows of uids on the primaries, batched per
// database and table.
func (s *SQLStore) listRowsOf(ctx context.Context, uids []string) ([]listRow, error) {
	byPlace := make(map[place][]any)
	seen := make(map[string]bool, len(uids))
	for _, u := range uids {
		if seen[u] || !ids.ValidUID(u) {
			continue
		}
		seen[u] = true
		db, t := s.layout.Locate(u)
		byPlace[place{db, t}] = append(byPlace[place{db, t}], u)
	}
	var out []listRow
	for p, keys := range byPlace {
		d := s.dbs[p.db]
		err := d.queryEach(ctx, d.r, d.t[p.table].listMany, 1, keys, func(rows *sql.Rows) error {
			var r listRow
			if err := rows.Scan(&r.uid, &r.conv, &r.kind); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read conversation lists in %s.%s: %w", d.name, d.t[p.table].uconvs, err)
		}
	}
	return out, nil
}

// userGroups returns the groups each of uids is a member of, from the
// primaries.
func (s *SQLStore) userGroups(ctx context.Context, uids []string) ([]listRow, map[string][]Group, error) {
	rows, err := s.listRowsOf(ctx, uids)
	if err != nil {
		return nil, nil, err
	}
	var pairs []memberPair
	for _, r := range rows {
		if r.kind == ids.KindGroup {
			pairs = append(pairs, memberPair{r.uid, strings.TrimPrefix(r.conv, "g:")})
		}
	}
	groups, err := s.memberGroups(ctx, pairs, false)
	if err != nil {
		return nil, nil, err
	}
	return rows, groups, nil
}

// UserConversations implements Store, reading the primaries.
func (s *SQLStore) UserConversations(ctx context.Context, uids []string) (map[string][]string, error) {
	rows, groups, err := s.userGroups(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("user conversations: %w", err)
	}
	out := make(map[string][]string, len(uids))
	for _, u := range uids {
		out[u] = []string{}
	}
	for _, r := range rows {
		if r.kind != ids.KindGroup {
			out[r.uid] = append(out[r.uid], r.conv)
		}
	}
	for u, gs := range groups {
		for _, g := range gs {
			out[u] = append(out[u], "g:"+g.ID)
		}
	}
	return out, nil
}

// UserGroupIDs implements Store, reading the primaries.
func (s *SQLStore) UserGroupIDs(ctx context.Context, uids []string) (map[string][]string, error) {
	_, groups, err := s.userGroups(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("user groups: %w", err)
	}
	out := make(map[string][]string, len(uids))
	for _, u := range uids {
		out[u] = []string{}
	}
	for u, gs := range groups {
		for _, g := range gs {
			if g.DissolvedAtMs == 0 {
				out[u] = append(out[u], g.ID)
			}
		}
	}
	return out, nil
}

// ListUserGroups implements Store: the groups uid is a member of, dissolved
// ones included, in id order, read from the primaries (a user added a
// moment ago is a member).
func (s *SQLStore) ListUserGroups(ctx context.Context, uid string) ([]Group, error) {
	if !ids.ValidUID(uid) {
		return nil, badField("uid %q is not valid", clip(uid))
	}
	_, groups, err := s.userGroups(ctx, []string{uid})
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", uid, err)
	}
	return groups[uid], nil
}
