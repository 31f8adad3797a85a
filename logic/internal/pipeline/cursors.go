package pipeline

import (
	"context"
	"errors"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

// cursorChanges collects a batch's cursor changes: READ and DELIVERED
// records, and each sender's own new messages (what you wrote you have
// read). Several changes to one (user, conversation) are merged.
func cursorChanges(items []*item) *dataproxy.UpdateCursorsReq {
	type key struct{ uid, conv string }
	merged := map[key]*dataproxy.CursorUpdate{}
	req := &dataproxy.UpdateCursorsReq{}
	bump := func(uid, conv string, delivered, read int64) {
		k := key{uid, conv}
		u, ok := merged[k]
		if !ok {
			u = &dataproxy.CursorUpdate{Uid: uid, ConvId: conv}
			merged[k] = u
			req.Updates = append(req.Updates, u)
		}
		u.DeliveredSeq = max(u.DeliveredSeq, delivered)
		u.ReadSeq = max(u.ReadSeq, read)
	}
	for _, it := range items {
		if it.errCode != 0 {
			continue
		}
		r := it.rec
		switch {
		case it.appends() && it.res != nil && !it.res.Duplicate:
			bump(r.Sender, r.ConvId, it.res.Seq, it.res.Seq)
		case r.Kind == events.UpKind_READ:
			bump(r.Sender, r.ConvId, r.Seq, r.Seq)
		case r.Kind == events.UpKind_DELIVERED:
			bump(r.Sender, r.ConvId, r.Seq, 0)
		}
	}
	if len(req.Updates) == 0 {
		return nil
	}
	return req
}

// SaveCursors stores a prepared batch's cursor changes. Cursors only grow,
// so it may run alongside the batch's produce and after later batches'
// saves. Cursors are advisory (unread counts, receipts): a refused update
// is counted and dropped, never holding the partition; a transient failure
// is retried until ctx ends.
func (p *Processor) SaveCursors(ctx context.Context, prep *Prepared) error {
	if prep.cursors == nil {
		return nil
	}
	err := retry(ctx, p.log, "update cursors", func() error {
		_, err := p.dp.UpdateCursors(ctx, prep.cursors)
		return err
	})
	var pe *permanentError
	if errors.As(err, &pe) {
		p.log.Debug("cursor update refused", "err", err)
		p.m.cursorFailures.Inc()
		return nil
	}
	return err
}
