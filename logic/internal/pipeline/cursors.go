package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// cursorChanges collects a batch's cursor changes: READ and DELIVERED
// records. (A sender's own new messages count as read too, but dataproxy
// raises those cursors itself, in the append.) Changes to one (user,
// conversation) are merged by the cursorSaver, with those of other
// batches.
func cursorChanges(items []*item) []*dataproxy.CursorUpdate {
	var ups []*dataproxy.CursorUpdate
	bump := func(uid, conv string, delivered, read int64) {
		ups = append(ups, &dataproxy.CursorUpdate{Uid: uid, ConvId: conv, DeliveredSeq: delivered, ReadSeq: read})
	}
	for _, it := range items {
		if it.errCode != 0 {
			continue
		}
		r := it.rec
		switch {
		case r.Kind == events.UpKind_READ:
			bump(r.Sender, r.ConvId, r.Seq, r.Seq)
		case r.Kind == events.UpKind_DELIVERED:
			bump(r.Sender, r.ConvId, r.Seq, 0)
		}
	}
	return ups
}

// SaveCursors stores a prepared batch's cursor changes and returns when
// they are stored (or refused), with the batch's read receipts, which
// announce the read cursors as saved (see receipts). Cursors are advisory
// (unread counts, receipts): a refused update is counted and dropped,
// never holding the partition, and gets no receipt; a transient failure is
// retried until ctx ends.
func (p *Processor) SaveCursors(ctx context.Context, prep *Prepared) ([]kafkax.Msg, error) {
	type result struct {
		receipts []kafkax.Msg
		err      error
	}
	done := make(chan result, 1)
	p.saveCursorsAsync(ctx, prep, func(receipts []kafkax.Msg, err error) { done <- result{receipts, err} })
	select {
	case r := <-done:
		return r.receipts, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// saveCursorsAsync is SaveCursors that calls done instead of waiting. The
// done callbacks of the saves one call carries run one after the other, in
// the order of the saves.
func (p *Processor) saveCursorsAsync(ctx context.Context, prep *Prepared, done func(receipts []kafkax.Msg, err error)) {
	if len(prep.cursors) == 0 {
		// (Every read record has a cursor change: no receipts either.)
		done(nil, nil)
		return
	}
	p.cursors.save(ctx, p, prep, done)
}

// savedCursors is what one cursor save stored: the read cursor of each
// (user, conversation) whose update was stored, as the store holds it
// after the call, and which of them a receipt has announced already.
type savedCursors struct {
	read      map[cursorKey]int64
	announced map[announcedKey]bool
}

// announcedKey is one connection told of one (user, conversation)'s read
// cursor.
type announcedKey struct {
	cursor cursorKey
	gw     string
	uid    string
	conn   int64
}

// maxCursorUpdates bounds the updates of one UpdateCursors call (dataproxy
// refuses calls over its -max-batch).
const maxCursorUpdates = 500

// cursorSaver merges the cursor changes of concurrent batches into few
// UpdateCursors calls: at most one call is in flight per Processor, and
// the changes that arrive meanwhile wait for the next one, merged per
// (user, conversation). Every store write of a cursor is a transaction
// on the user's database; under load one call now carries the changes of
// many batches instead of one transaction per batch. Cursors only grow,
// so merging (keeping the highest) and reordering are harmless.
type cursorSaver struct {
	mu      sync.Mutex
	running bool
	pending map[cursorKey]*dataproxy.CursorUpdate
	order   []*dataproxy.CursorUpdate // pending, in arrival order
	waiters []cursorWaiter
}

type cursorWaiter struct {
	ctx   context.Context
	reads []readReceipt
	done  func([]kafkax.Msg, error)
}

type cursorKey struct{ uid, conv string }

func (s *cursorSaver) save(ctx context.Context, p *Processor, prep *Prepared, done func([]kafkax.Msg, error)) {
	s.mu.Lock()
	if s.pending == nil {
		s.pending = make(map[cursorKey]*dataproxy.CursorUpdate)
	}
	for _, u := range prep.cursors {
		k := cursorKey{u.Uid, u.ConvId}
		if m, ok := s.pending[k]; ok {
			m.DeliveredSeq = max(m.DeliveredSeq, u.DeliveredSeq)
			m.ReadSeq = max(m.ReadSeq, u.ReadSeq)
			continue
		}
		c := *u
		s.pending[k] = &c
		s.order = append(s.order, &c)
	}
	s.waiters = append(s.waiters, cursorWaiter{ctx, prep.reads, done})
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.run(p)
	}
}

// run makes calls until nothing is pending. A call (with its retries)
// goes on while any of the saves it carries still has a live context.
func (s *cursorSaver) run(p *Processor) {
	for {
		s.mu.Lock()
		ups, waiters := s.order, s.waiters
		if len(waiters) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.order, s.waiters = nil, nil
		clear(s.pending)
		s.mu.Unlock()

		ctx, cancel := context.WithCancel(context.WithoutCancel(waiters[0].ctx))
		var live atomic.Int64
		live.Store(int64(len(waiters)))
		stops := make([]func() bool, len(waiters))
		for i, w := range waiters {
			stops[i] = context.AfterFunc(w.ctx, func() {
				if live.Add(-1) == 0 {
					cancel()
				}
			})
		}
		saved, err := p.updateCursors(ctx, ups)
		for _, stop := range stops {
			stop()
		}
		cancel()
		for _, w := range waiters {
			if err != nil {
				w.done(nil, err)
				continue
			}
			w.done(p.receipts(w.reads, saved), nil)
		}
	}
}

// updateCursors stores ups in calls of at most maxCursorUpdates and
// returns the read cursors the store holds afterwards, for the updates it
// did not refuse.
func (p *Processor) updateCursors(ctx context.Context, ups []*dataproxy.CursorUpdate) (*savedCursors, error) {
	saved := &savedCursors{read: make(map[cursorKey]int64, len(ups)), announced: map[announcedKey]bool{}}
	for len(ups) > 0 {
		part := ups[:min(len(ups), maxCursorUpdates)]
		ups = ups[len(part):]
		var resp *dataproxy.UpdateCursorsResp
		err := retry(ctx, p.log, "update cursors", func() (err error) {
			resp, err = p.dp.UpdateCursors(ctx, &dataproxy.UpdateCursorsReq{Updates: part})
			return err
		})
		var pe *permanentError
		if errors.As(err, &pe) {
			p.log.Debug("cursor update refused", "err", err)
			p.m.cursorFailures.Inc()
			continue
		}
		if err != nil {
			return nil, err
		}
		// One cursor per update, in order.
		if len(resp.Cursors) != len(part) {
			p.log.Warn("dataproxy answered a cursor update with the wrong number of cursors; no receipts", "updates", len(part), "cursors", len(resp.Cursors))
			continue
		}
		for i, c := range resp.Cursors {
			if c != nil {
				saved.read[cursorKey{part[i].Uid, part[i].ConvId}] = c.ReadSeq
			}
		}
	}
	return saved, nil
}
