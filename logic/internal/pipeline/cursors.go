package pipeline

import (
	"context"
	"errors"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

// moveCursors applies the batch's cursor changes in one call: READ and
// DELIVERED records, and each sender's own new messages (what you wrote
// you have read). Cursors only grow; several changes to one (user,
// conversation) in a batch are merged.
func (p *Processor) moveCursors(ctx context.Context, items []*item) error {
	type key struct{ uid, conv string }
	merged := map[key]*dataproxy.CursorUpdate{}
	var order []key
	bump := func(uid, conv string, delivered, read int64) {
		k := key{uid, conv}
		u, ok := merged[k]
		if !ok {
			u = &dataproxy.CursorUpdate{Uid: uid, ConvId: conv}
			merged[k] = u
			order = append(order, k)
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
	if len(order) == 0 {
		return nil
	}
	req := &dataproxy.UpdateCursorsReq{}
	for _, k := range order {
		req.Updates = append(req.Updates, merged[k])
	}
	var resp *dataproxy.UpdateCursorsResp
	err := retry(ctx, p.log, "update cursors", func() (err error) {
		resp, err = p.dp.UpdateCursors(ctx, req)
		return err
	})
	var pe *permanentError
	if errors.As(err, &pe) {
		// Cursors are advisory (unread counts, receipts): never hold the
		// partition for them.
		p.log.Debug("cursor update refused", "err", err)
		p.m.cursorFailures.Inc()
		return nil
	}
	if err != nil {
		return err
	}
	after := map[key]int64{}
	for _, c := range resp.Cursors {
		after[key{c.Uid, c.ConvId}] = c.ReadSeq
	}
	for _, it := range items {
		if it.errCode == 0 && it.rec.Kind == events.UpKind_READ {
			it.readSeq = after[key{it.rec.Sender, it.rec.ConvId}]
		}
	}
	return nil
}
