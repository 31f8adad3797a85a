package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// seqKey names one message.
type seqKey struct {
	conv string
	seq  int64
}

// recallMark is a stored message a batch recalls, in table table.
type recallMark struct {
	table int
	key   seqKey
}

// target is what a recall needs to know of the message it recalls.
type target struct {
	found    bool
	sender   string
	created  int64
	recalled bool
	event    bool // a recall event itself
}

// judge returns why it may not recall t (created is the recall's time), or
// nil.
func (t target) judge(it *AppendItem, created int64) *errcode.Error {
	switch {
	case !t.found:
		return errcode.New(errcode.BadField, "%s has no message %d", it.ConvID, it.RecallSeq)
	case t.event:
		return errcode.New(errcode.BadField, "message %d is a recall event and cannot be recalled", it.RecallSeq)
	case t.sender != it.Sender && !it.ByOperator:
		return errcode.New(errcode.Forbidden, "only the sender may recall message %d", it.RecallSeq)
	case t.sender != it.Sender:
		return errcode.New(errcode.BadField, "message %d was sent by %q, not %q", it.RecallSeq, clip(t.sender), clip(it.Sender))
	case t.recalled:
		return errcode.New(errcode.BadField, "message %d is recalled already", it.RecallSeq)
	case t.created < created-it.RecallWindowMs && !it.ByOperator:
		return errcode.New(errcode.Forbidden, "recall window passed for message %d", it.RecallSeq)
	}
	return nil
}

type memberKey struct{ conv, uid string }

// checks is the stored state an append batch's items are judged by, read
// inside the transaction once the conversation rows are locked: the group
// conversations' groups (active or not) and which senders are members, and
// the stored messages the batch's recalls name.
type checks struct {
	active  map[string]bool // group conversation (of a group that exists) -> not dissolved
	members map[memberKey]bool
	targets map[seqKey]target
}

// refuse returns why it may not be stored in conversation st, apart from
// what a recall's target decides, or nil.
func (c *checks) refuse(it *AppendItem, st *convState) *errcode.Error {
	if st.kind != ids.KindGroup {
		return nil
	}
	active, exists := c.active[it.ConvID]
	if !st.found || !exists {
		return errcode.New(errcode.ConvNotFound, "group %q does not exist", strings.TrimPrefix(it.ConvID, "g:"))
	}
	if !active && !it.ByOperator {
		// A dissolved group takes nothing more, except the operator's
		// recalls: its history stays readable, so what moderation finds
		// there must still be taken down.
		return errcode.New(errcode.ConvNotFound, "group %q was dissolved", strings.TrimPrefix(it.ConvID, "g:"))
	}
	if !c.members[memberKey{it.ConvID, it.Sender}] && !it.ByOperator {
		return errcode.New(errcode.Forbidden, "%q is not a member of group %q", it.Sender, strings.TrimPrefix(it.ConvID, "g:"))
	}
	return nil
}

// refusable reports whether it may be refused: a recall, or an item that
// refuse turns down.
func (c *checks) refusable(it *AppendItem, st *convState) bool {
	return it.RecallSeq > 0 || c.refuse(it, st) != nil
}

// mayRefuse reports whether any item of the batch is refusable.
func (c *checks) mayRefuse(reqs []*appendReq, convs map[string]*convState) bool {
	for _, r := range reqs {
		for k := range r.items {
			if it := &r.items[k]; c.refusable(it, convs[it.ConvID]) {
				return true
			}
		}
	}
	return false
}

// loadChecks reads what the batch's group messages and recalls are judged
// by: per table, the groups of the group conversations that exist, their
// members among the senders, and the stored messages to recall. A batch of
// one-to-one messages only runs no query.
func (d *shardDB) loadChecks(ctx context.Context, tx *sql.Tx, reqs []*appendReq, convs map[string]*convState) (*checks, error) {
	c := &checks{active: map[string]bool{}, members: map[memberKey]bool{}, targets: map[seqKey]target{}}
	groups := make([][]any, len(d.t))
	pairs := make([][]any, len(d.t))
	recalls := make([][]any, len(d.t))
	seenG := map[string]bool{}
	seenM := map[memberKey]bool{}
	seenT := map[seqKey]bool{}
	for _, r := range reqs {
		for k := range r.items {
			it := &r.items[k]
			st := convs[it.ConvID]
			if st.kind == ids.KindGroup && st.found {
				g := strings.TrimPrefix(it.ConvID, "g:")
				if !seenG[it.ConvID] {
					seenG[it.ConvID] = true
					groups[st.table] = append(groups[st.table], g)
				}
				if mk := (memberKey{it.ConvID, it.Sender}); !seenM[mk] {
					seenM[mk] = true
					pairs[st.table] = append(pairs[st.table], g, it.Sender)
				}
			}
			if tk := (seqKey{it.ConvID, it.RecallSeq}); it.RecallSeq > 0 && it.RecallSeq <= st.startSeq && !seenT[tk] {
				seenT[tk] = true
				recalls[st.table] = append(recalls[st.table], it.ConvID, it.RecallSeq)
			}
		}
	}
	for t := range d.t {
		ts := d.t[t]
		if len(groups[t]) > 0 {
			err := d.queryEach(ctx, tx, ts.groupState, 1, groups[t], func(rows *sql.Rows) error {
				var g string
				var dissolved int64
				if err := rows.Scan(&g, &dissolved); err != nil {
					return err
				}
				c.active["g:"+g] = dissolved == 0
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read groups in %s.%s: %w", d.name, ts.groups, err)
			}
		}
		if len(pairs[t]) > 0 {
			err := d.queryEach(ctx, tx, ts.memberCheck, 2, pairs[t], func(rows *sql.Rows) error {
				var g, u string
				if err := rows.Scan(&g, &u); err != nil {
					return err
				}
				c.members[memberKey{"g:" + g, u}] = true
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read group members in %s.%s: %w", d.name, ts.members, err)
			}
		}
		if len(recalls[t]) > 0 {
			err := d.queryEach(ctx, tx, ts.recallTarget, 2, recalls[t], func(rows *sql.Rows) error {
				var k seqKey
				var tg target
				var recalled int
				var refSeq int64
				if err := rows.Scan(&k.conv, &k.seq, &tg.sender, &tg.created, &recalled, &refSeq); err != nil {
					return err
				}
				tg.found, tg.recalled, tg.event = true, recalled != 0, refSeq > 0
				c.targets[k] = tg
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read messages to recall in %s.%s: %w", d.name, ts.msgs, err)
			}
		}
	}
	return c, nil
}

// markRecalled marks the stored messages of marks recalled and empties
// their bodies.
func (d *shardDB) markRecalled(ctx context.Context, tx *sql.Tx, marks []recallMark) error {
	for _, m := range marks {
		ts := d.t[m.table]
		if _, err := tx.ExecContext(ctx, ts.markRecalled, m.key.conv, m.key.seq); err != nil {
			return fmt.Errorf("mark message %d of %s recalled in %s.%s: %w", m.key.seq, m.key.conv, d.name, ts.msgs, err)
		}
	}
	return nil
}
