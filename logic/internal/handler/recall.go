package handler

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// errRecalledBefore ends Recall's wait: the message was recalled, not by
// this call's record (its sender got there first).
var errRecalledBefore = errors.New("recalled before")

// Recall takes back a message on the operator's behalf (the moderation job,
// an abuse desk): any message, at any age, in the name of its sender, in a
// dissolved group too (its history stays readable). The
// recall is an upstream record like a client's, so it is ordered with the
// conversation's other messages and pushed and synced as a recall event
// whose body is the reason. Its client message id is derived from the
// recalled seq (protocol.OperatorRecallCMID), so calling again is answered
// as a duplicate.
func (h *Handler) Recall(ctx context.Context, req *logic.RecallReq) (*logic.RecallResp, error) {
	if err := h.recaller(req.AdminSecret); err != nil {
		return nil, err
	}
	switch {
	case !ids.ValidConv(req.ConvId):
		return nil, errcode.Biz(errcode.BadField, "invalid conv_id")
	case req.Seq <= 0:
		return nil, errcode.Biz(errcode.BadField, "seq must be positive")
	case req.Reason == "" || len(req.Reason) > protocol.MaxRecallReason || !utf8.ValidString(req.Reason):
		return nil, errcode.Biz(errcode.BadField, "reason must be 1-%d bytes of UTF-8", protocol.MaxRecallReason)
	}
	m, err := h.messageAt(ctx, req.ConvId, req.Seq)
	if err != nil {
		return nil, err
	}
	if m.ContentType == protocol.ContentTypeRecall {
		return nil, errcode.Biz(errcode.BadField, "message %d is a recall event", req.Seq)
	}
	rec := &events.UpRecord{Kind: events.UpKind_RECALL, Sender: m.Sender, Device: ServerDevice,
		ClientMsgId: protocol.OperatorRecallCMID(req.Seq), ConvId: req.ConvId, Seq: req.Seq, Body: req.Reason,
		ByOperator: true, ReceivedAtMs: h.now().UnixMilli()}
	if m.Recalled {
		// By its sender, or by an earlier call of this one.
		return h.recalledBefore(ctx, rec, true)
	}
	// The pipeline refuses the record, and cannot tell this call, when the
	// sender recalls the message in the meantime: check between polls.
	check := func(ctx context.Context) error {
		m, err := h.messageAt(ctx, req.ConvId, req.Seq)
		if err == nil && m.Recalled {
			return errRecalledBefore
		}
		return nil
	}
	ev, dup, err := h.throughPipeline(ctx, rec, req.WaitMs, check)
	if err == nil {
		return operatorEvent(rec, ev, dup)
	}
	// Ours may have been stored since the last poll (just before the wait
	// ran out, say); without it, the sender's own recall is an answer, any
	// other end of the wait is not.
	resp, lerr := h.recalledBefore(ctx, rec, false)
	if lerr == nil && (!resp.AlreadyRecalled || errors.Is(err, errRecalledBefore)) {
		return resp, nil
	}
	return nil, err
}

// recalledBefore answers a Recall whose message is recalled already: by
// the operator's recall rec (dup tells whether by an earlier call) or by
// its sender.
func (h *Handler) recalledBefore(ctx context.Context, rec *events.UpRecord, dup bool) (*logic.RecallResp, error) {
	found, err := h.dp.GetMessage(ctx, &dataproxy.GetMessageReq{ConvId: rec.ConvId, Sender: rec.Sender, ClientMsgId: rec.ClientMsgId})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	if !found.Found {
		return &logic.RecallResp{AlreadyRecalled: true}, nil
	}
	return operatorEvent(rec, found.Message, dup)
}

// operatorEvent answers with ev, the message stored under rec's client
// message id, after checking that it is rec's recall event: a client
// message stored with that id before such ids were reserved is not.
func operatorEvent(rec *events.UpRecord, ev *common.Message, dup bool) (*logic.RecallResp, error) {
	if ev.ContentType != protocol.ContentTypeRecall || ev.RefSeq != rec.Seq {
		return nil, errcode.Biz(errcode.BadField, "message %d of %s has the client message id %s, which is kept for the operator's recall of message %d, but is not that recall",
			ev.Seq, rec.ConvId, rec.ClientMsgId, rec.Seq)
	}
	return &logic.RecallResp{Seq: ev.Seq, CreatedAtMs: ev.CreatedAtMs, Duplicate: dup}, nil
}

// messageAt returns message seq of conv, or a BadField error when there is
// none.
func (h *Handler) messageAt(ctx context.Context, conv string, seq int64) (*common.Message, error) {
	resp, err := h.dp.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv, AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		if c, _ := errcode.Of(err); c == errcode.ConvNotFound {
			return nil, errcode.Biz(errcode.ConvNotFound, "no conversation %q", conv)
		}
		return nil, errcode.ToBiz(err)
	}
	if len(resp.Messages) == 0 || resp.Messages[0].Seq != seq {
		return nil, errcode.Biz(errcode.BadField, "%s has no message %d", conv, seq)
	}
	return resp.Messages[0], nil
}
