package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Groups. A group's rows — chat_groups (one per group) and group_members
// (one per member) — live with its conversation: in the database and table
// of "g:<id>", next to its messages and its conversations row. Every change
// of a group runs in one transaction of that database that first locks the
// conversations row (which CreateGroup creates with last_seq 0), the row
// appends lock too: so a message is judged against the membership as it is
// when it is numbered, and changes of one group serialise.
//
// Each member also has a list row of kind "group" (user_conversations,
// placed by uid, so usually in another database). It is written before the
// member is added and again after (an existing row is left as it is), and
// kept when the member is removed: it holds the member's cursors, which a
// member added back finds as they left them. Reads treat it as a hint and
// check group_members; see list.go.

func validGroupID(id string) error {
	if !ids.ValidConv("g:" + id) {
		return errcode.New(errcode.BadField, "group id %q is not valid", clip(id))
	}
	return nil
}

// groupUIDs checks uids, drops repeats and returns them in the order given.
func groupUIDs(uids []string) ([]string, error) { return uniqueUIDs(uids, MaxGroupChange) }

// uniqueUIDs is groupUIDs with the limit max.
func uniqueUIDs(uids []string, max int) ([]string, error) {
	if len(uids) > max {
		return nil, errcode.New(errcode.BadRequest, "%d users in one call; the limit is %d", len(uids), max)
	}
	out := make([]string, 0, len(uids))
	seen := make(map[string]bool, len(uids))
	for _, u := range uids {
		if !ids.ValidUID(u) {
			return nil, errcode.New(errcode.BadField, "uid %q is not valid", clip(u))
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, nil
}

func groupNotFound(id string) error {
	return errcode.New(errcode.ConvNotFound, "group %q does not exist", id)
}

func groupGone(id string) error {
	return errcode.New(errcode.ConvNotFound, "group %q does not exist or was dissolved", id)
}

// groupDB returns the database and tables of a group's rows.
func (s *SQLStore) groupDB(id string) (*shardDB, tableSQL) {
	db, t := s.layout.Locate("g:" + id)
	return s.dbs[db], s.dbs[db].t[t]
}

// requireUsers returns UserNotFound naming the first of uids that does not
// exist.
func (s *SQLStore) requireUsers(ctx context.Context, uids []string) error {
	found, err := s.GetUsers(ctx, uids)
	if err != nil {
		return err
	}
	if len(found) == len(uids) {
		return nil
	}
	have := make(map[string]bool, len(found))
	for _, u := range found {
		have[u.UID] = true
	}
	for _, u := range uids {
		if !have[u] {
			return errcode.New(errcode.UserNotFound, "no user %q", u)
		}
	}
	return nil
}

// inTx runs fn in a write transaction of d and commits it, again after a
// deadlock.
func (d *shardDB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := func() error {
			tx, err := d.w.BeginTx(ctx, d.d.txOptions)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if err := fn(tx); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err == nil || !d.d.retryable(err) || attempt == maxAttempts {
			return err
		}
		d.stats.retries.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// readGroup reads a group's row with q (a transaction or a pool); ok is
// false when there is none.
func readGroup(ctx context.Context, q querier, ts tableSQL, id string) (g Group, ok bool, err error) {
	err = scanRows(q.QueryContext(ctx, "SELECT group_id, name, owner, created_at_ms, dissolved_at_ms, member_count FROM "+ts.groups+" WHERE group_id = ?", id))(
		func(rows *sql.Rows) error {
			ok = true
			return rows.Scan(&g.ID, &g.Name, &g.Owner, &g.CreatedAtMs, &g.DissolvedAtMs, &g.MemberCount)
		})
	return g, ok, err
}

// lockGroup locks the group's conversations row and reads its group row
// inside tx. ok is false when the group does not exist.
func (d *shardDB) lockGroup(ctx context.Context, tx *sql.Tx, ts tableSQL, id string) (Group, bool, error) {
	var last int64
	err := tx.QueryRowContext(ctx, "SELECT last_seq FROM "+ts.convs+" WHERE conv_id = ?"+d.d.lockSuffix, "g:"+id).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return Group{}, false, nil
	}
	if err != nil {
		return Group{}, false, fmt.Errorf("lock group %s in %s.%s: %w", id, d.name, ts.convs, err)
	}
	g, ok, err := readGroup(ctx, tx, ts, id)
	if err != nil {
		return Group{}, false, fmt.Errorf("read group %s in %s.%s: %w", id, d.name, ts.groups, err)
	}
	return g, ok, nil
}

// lockActiveGroup is lockGroup for a change that needs the group to exist
// and not be dissolved (groupGone otherwise).
func (d *shardDB) lockActiveGroup(ctx context.Context, tx *sql.Tx, ts tableSQL, id string) (Group, error) {
	g, ok, err := d.lockGroup(ctx, tx, ts, id)
	if err != nil {
		return Group{}, err
	}
	if !ok || g.DissolvedAtMs != 0 {
		return Group{}, groupGone(id)
	}
	return g, nil
}

// membersAmong returns those of uids that are members of the group, read
// with q.
func membersAmong(ctx context.Context, q querier, ts tableSQL, id string, uids []string) ([]string, error) {
	args := make([]any, 0, 2*len(uids))
	for _, u := range uids {
		args = append(args, id, u)
	}
	var out []string
	err := queryKeys(ctx, q, ts.memberCheck, nil, 2, args, func(rows *sql.Rows) error {
		var g, u string
		if err := rows.Scan(&g, &u); err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// writeGroupRows writes the list rows of kind group of uids for the group,
// each in its user's database (one transaction per database).
func (s *SQLStore) writeGroupRows(ctx context.Context, id string, uids []string, now int64) error {
	per := make(map[int][]indexRow)
	for _, u := range uids {
		db, t := s.layout.Locate(u)
		per[db] = append(per[db], indexRow{uid: u, conv: "g:" + id, kind: ids.KindGroup, table: t, created: now})
	}
	for db, rows := range per {
		d := s.dbs[db]
		err := d.inTx(ctx, func(tx *sql.Tx) error { return d.writeIndex(ctx, tx, []*appendReq{{index: rows}}) })
		if err != nil {
			return fmt.Errorf("group %s: %w", id, err)
		}
	}
	return nil
}

// CreateGroup implements Store: the group, with g.Owner as its owner and
// members (besides the owner) as members. It is BadField if the group
// exists (dissolved or not) or an id or the name is malformed, and
// UserNotFound naming the first user that does not exist.
func (s *SQLStore) CreateGroup(ctx context.Context, g Group, members []string) (Group, error) {
	if err := validGroupID(g.ID); err != nil {
		return Group{}, err
	}
	if !ids.ValidUID(g.Owner) {
		return Group{}, badField("owner %q is not valid", clip(g.Owner))
	}
	if !utf8.ValidString(g.Name) || utf8.RuneCountInString(g.Name) > MaxGroupName {
		return Group{}, badField("group name must be valid UTF-8 of at most %d characters", MaxGroupName)
	}
	if g.CreatedAtMs < 0 {
		return Group{}, badField("created_at_ms is negative")
	}
	if g.CreatedAtMs == 0 {
		g.CreatedAtMs = s.now().UnixMilli()
	}
	if len(members) > MaxGroupChange { // the owner is not counted
		return Group{}, errcode.New(errcode.BadRequest, "%d members in one call; the limit is %d", len(members), MaxGroupChange)
	}
	all, err := uniqueUIDs(append([]string{g.Owner}, members...), MaxGroupChange+1)
	if err != nil {
		return Group{}, err
	}
	if len(all) > s.opts.MaxGroupMembers {
		return Group{}, badField("a group has at most %d members", s.opts.MaxGroupMembers)
	}
	d, ts := s.groupDB(g.ID)
	if _, ok, err := readGroup(ctx, d.r, ts, g.ID); err != nil {
		return Group{}, fmt.Errorf("create group %s: %w", g.ID, err)
	} else if ok {
		return Group{}, badField("group %q exists", g.ID)
	}
	if err := s.requireUsers(ctx, all); err != nil {
		return Group{}, err
	}
	if err := s.writeGroupRows(ctx, g.ID, all, g.CreatedAtMs); err != nil {
		return Group{}, err
	}
	g.DissolvedAtMs, g.MemberCount = 0, len(all)
	conv := "g:" + g.ID
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+ts.convs+" (conv_id, kind, last_seq, created_at_ms, updated_at_ms) VALUES (?, ?, 0, ?, ?)"+
			d.d.keepTail("conv_id"), conv, ids.KindGroup, g.CreatedAtMs, g.CreatedAtMs); err != nil {
			return fmt.Errorf("create conversation: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+ts.groups+" (group_id, name, owner, created_at_ms, dissolved_at_ms, member_count) VALUES (?, ?, ?, ?, 0, ?)",
			g.ID, g.Name, g.Owner, g.CreatedAtMs, g.MemberCount); err != nil {
			if d.d.duplicate(err) {
				return badField("group %q exists", g.ID)
			}
			return err
		}
		return d.insertMembers(ctx, tx, ts, g.ID, all, g.Owner, g.CreatedAtMs)
	})
	if err != nil {
		return Group{}, wrapGroup("create", g.ID, d, err)
	}
	// The rows were written before the commit; this second write only
	// covers a removal racing with the creation, so a failure here is
	// logged, not returned (the group exists: a retry would be refused).
	actx, cancel := afterCommit(ctx)
	defer cancel()
	if err := s.writeGroupRows(actx, g.ID, all, g.CreatedAtMs); err != nil {
		s.log.Warn("list rows not written again after creating a group", "group", g.ID, "err", err)
	}
	return g, nil
}

// afterCommitTimeout bounds the steps that follow a committed group change
// (list rows in the users' databases, reading the membership again).
const afterCommitTimeout = 10 * time.Second

// afterCommit is ctx without its cancellation, bounded by
// afterCommitTimeout: once a group change has committed, the steps that
// follow must not be cut short because the caller stopped waiting.
func afterCommit(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), afterCommitTimeout)
}

// AfterCommitError is a failure after a group change committed: the
// change stands, but a step that follows it did not happen (a member's
// list row was not written). Calling again with the same arguments
// completes it. Callers that keep caches in step with the membership must
// update them as for a success.
type AfterCommitError struct{ Err error }

func (e *AfterCommitError) Error() string { return "the change committed, then: " + e.Err.Error() }
func (e *AfterCommitError) Unwrap() error { return e.Err }

// wrapGroup adds context to a database error; a coded error is returned as
// it is.
func wrapGroup(op, id string, d *shardDB, err error) error {
	if err == nil {
		return nil
	}
	var e *errcode.Error
	if errors.As(err, &e) {
		return e
	}
	return fmt.Errorf("%s group %s in %s: %w", op, id, d.name, err)
}

func (d *shardDB) insertMembers(ctx context.Context, tx *sql.Tx, ts tableSQL, id string, uids []string, owner string, at int64) error {
	args := make([]any, 0, 4*len(uids))
	for _, u := range uids {
		role := RoleMember
		if u == owner {
			role = RoleOwner
		}
		args = append(args, id, u, role, at)
	}
	q := rowSQL{head: "INSERT INTO " + ts.members + " (group_id, uid, role, joined_at_ms) VALUES ", tuple: "(?, ?, ?, ?)"}
	return d.execRows(ctx, tx, q, 4, args, nil)
}

// AddGroupMembers implements Store: it adds those of uids who are not
// members and returns how many that was, with the group. An unknown or
// dissolved group is ConvNotFound, a user that does not exist
// UserNotFound, more members than allowed BadField.
func (s *SQLStore) AddGroupMembers(ctx context.Context, id string, uids []string, atMs int64) (int, Group, error) {
	if err := validGroupID(id); err != nil {
		return 0, Group{}, err
	}
	uids, err := groupUIDs(uids)
	if err != nil {
		return 0, Group{}, err
	}
	if atMs <= 0 {
		atMs = s.now().UnixMilli()
	}
	d, ts := s.groupDB(id)
	if g, ok, err := readGroup(ctx, d.r, ts, id); err != nil {
		return 0, Group{}, wrapGroup("add to", id, d, err)
	} else if !ok || g.DissolvedAtMs != 0 {
		return 0, Group{}, groupGone(id)
	}
	if len(uids) == 0 {
		g, err := s.GetGroup(ctx, id)
		return 0, g, err
	}
	if err := s.requireUsers(ctx, uids); err != nil {
		return 0, Group{}, err
	}
	if err := s.writeGroupRows(ctx, id, uids, atMs); err != nil {
		return 0, Group{}, err
	}
	var g Group
	var added []string
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if g, err = d.lockActiveGroup(ctx, tx, ts, id); err != nil {
			return err
		}
		have, err := membersAmong(ctx, tx, ts, id, uids)
		if err != nil {
			return err
		}
		added = slices.DeleteFunc(slices.Clone(uids), func(u string) bool { return slices.Contains(have, u) })
		if len(added) == 0 {
			return nil
		}
		if g.MemberCount+len(added) > s.opts.MaxGroupMembers {
			return badField("group %q would have %d members; the limit is %d", id, g.MemberCount+len(added), s.opts.MaxGroupMembers)
		}
		if err := d.insertMembers(ctx, tx, ts, id, added, "", atMs); err != nil {
			return err
		}
		g.MemberCount += len(added)
		_, err = tx.ExecContext(ctx, "UPDATE "+ts.groups+" SET member_count = ? WHERE group_id = ?", g.MemberCount, id)
		return err
	})
	if err != nil {
		return 0, Group{}, wrapGroup("add to", id, d, err)
	}
	actx, cancel := afterCommit(ctx)
	defer cancel()
	if err := s.writeGroupRows(actx, id, uids, atMs); err != nil {
		// A member without a list row is not found from the uid's side:
		// the caller must call again (adding members who are in changes
		// nothing but writes their rows).
		return len(added), g, &AfterCommitError{err}
	}
	return len(added), g, nil
}

// RemoveGroupMembers implements Store: it removes those of uids who are
// members and returns how many that was, with the group. An unknown or
// dissolved group is ConvNotFound; naming the owner is Forbidden (and
// removes nobody).
func (s *SQLStore) RemoveGroupMembers(ctx context.Context, id string, uids []string) (int, Group, error) {
	if err := validGroupID(id); err != nil {
		return 0, Group{}, err
	}
	uids, err := groupUIDs(uids)
	if err != nil {
		return 0, Group{}, err
	}
	d, ts := s.groupDB(id)
	var g Group
	var gone []string
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if g, err = d.lockActiveGroup(ctx, tx, ts, id); err != nil {
			return err
		}
		if slices.Contains(uids, g.Owner) {
			return errcode.New(errcode.Forbidden, "the owner of group %q cannot be removed", id)
		}
		if len(uids) == 0 {
			return nil
		}
		if gone, err = membersAmong(ctx, tx, ts, id, uids); err != nil || len(gone) == 0 {
			return err
		}
		args := make([]any, 0, 2*len(gone))
		for _, u := range gone {
			args = append(args, id, u)
		}
		for lo := 0; lo < len(gone); lo += keysPerQuery {
			hi := min(lo+keysPerQuery, len(gone))
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+ts.members+" WHERE "+orTerms("(group_id = ? AND uid = ?)")(hi-lo), args[2*lo:2*hi]...); err != nil {
				return err
			}
		}
		g.MemberCount -= len(gone)
		_, err = tx.ExecContext(ctx, "UPDATE "+ts.groups+" SET member_count = ? WHERE group_id = ?", g.MemberCount, id)
		return err
	})
	if err != nil {
		return 0, Group{}, wrapGroup("remove from", id, d, err)
	}
	// The removed members' list rows stay, with their cursors: a row is
	// only a hint (every read checks the membership), and a member added
	// back finds the row, and what they had read, as they left it
	// (writeGroupRows keeps an existing row). Deleting them would reset the
	// cursors of a member added back, and a deletion that came after a
	// concurrent add would have to write the row again, with zeros.
	return len(gone), g, nil
}

// DissolveGroup implements Store: the group takes no more messages or
// members; its members and history stay readable. Dissolving it again
// changes nothing; an unknown group is ConvNotFound.
func (s *SQLStore) DissolveGroup(ctx context.Context, id string, atMs int64) error {
	if err := validGroupID(id); err != nil {
		return err
	}
	if atMs <= 0 {
		atMs = s.now().UnixMilli()
	}
	d, ts := s.groupDB(id)
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		g, ok, err := d.lockGroup(ctx, tx, ts, id)
		switch {
		case err != nil:
			return err
		case !ok:
			return groupNotFound(id)
		case g.DissolvedAtMs != 0:
			return nil
		}
		_, err = tx.ExecContext(ctx, "UPDATE "+ts.groups+" SET dissolved_at_ms = ? WHERE group_id = ?", atMs, id)
		return err
	})
	return wrapGroup("dissolve", id, d, err)
}

// GetGroup implements Store, reading the primary. An unknown group is
// ConvNotFound; a dissolved one is returned with DissolvedAtMs set.
func (s *SQLStore) GetGroup(ctx context.Context, id string) (Group, error) {
	if err := validGroupID(id); err != nil {
		return Group{}, err
	}
	d, ts := s.groupDB(id)
	g, ok, err := readGroup(ctx, d.r, ts, id)
	if err != nil {
		return Group{}, wrapGroup("read", id, d, err)
	}
	if !ok {
		return Group{}, groupNotFound(id)
	}
	return g, nil
}

// ListGroupMembers implements Store: a page of the group's members in uid
// order after afterUID ("" for the first page), at most limit (0 means
// DefaultMemberLimit, more than MaxMemberLimit is cut), and whether more
// follow. A dissolved group's members are its members when it was
// dissolved.
func (s *SQLStore) ListGroupMembers(ctx context.Context, id, afterUID string, limit int) ([]GroupMember, bool, error) {
	if afterUID != "" && !ids.ValidUID(afterUID) {
		return nil, false, badField("after_uid %q is not valid", clip(afterUID))
	}
	switch {
	case limit < 0:
		return nil, false, badField("limit is negative")
	case limit == 0:
		limit = DefaultMemberLimit
	case limit > MaxMemberLimit:
		limit = MaxMemberLimit
	}
	if _, err := s.GetGroup(ctx, id); err != nil {
		return nil, false, err
	}
	d, ts := s.groupDB(id)
	out := make([]GroupMember, 0, min(limit+1, 64))
	err := scanRows(d.r.QueryContext(ctx, "SELECT uid, role, joined_at_ms FROM "+ts.members+" WHERE group_id = ? AND uid > ? ORDER BY uid LIMIT ?",
		id, afterUID, limit+1))(func(rows *sql.Rows) error {
		var m GroupMember
		if err := rows.Scan(&m.UID, &m.Role, &m.JoinedAtMs); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, false, wrapGroup("list members of", id, d, err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// MembersAmong implements Store, reading the primary.
func (s *SQLStore) MembersAmong(ctx context.Context, id string, uids []string) ([]string, error) {
	if err := validGroupID(id); err != nil {
		return nil, err
	}
	d, ts := s.groupDB(id)
	out, err := membersAmong(ctx, d.r, ts, id, uids)
	if err != nil {
		return nil, wrapGroup("read members of", id, d, err)
	}
	return out, nil
}
