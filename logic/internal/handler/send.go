package handler

import (
	"context"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// Send delivers a message for an app backend (a system message, a bot)
// through the same path as a client send: it is produced to the upstream
// topic, keyed by conversation, so it is ordered, deduplicated, stored and
// pushed exactly like one; the call returns once the message is stored.
// Retrying with the same client_msg_id is safe and returns the original.
func (h *Handler) Send(ctx context.Context, req *logic.SendReq) (*logic.SendResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	if !ids.ValidUID(req.From) {
		return nil, errcode.Biz(errcode.BadField, "invalid sender")
	}
	if !protocol.ValidClientMsgID(req.ClientMsgId) {
		return nil, errcode.Biz(errcode.BadField, "client_msg_id must be 1-%d bytes and not start with %s",
			protocol.MaxClientMsgIDLen, protocol.ReservedCMIDPrefix)
	}
	// Everything the pipeline or the store would refuse is refused here:
	// a record refused there has no connection to answer, and the call
	// would only time out.
	switch {
	case req.Body == "":
		return nil, errcode.Biz(errcode.BadField, "body is empty")
	case len(req.Body) > h.cfg.MaxBody:
		return nil, errcode.Biz(errcode.TooLarge, "body is over %d bytes", h.cfg.MaxBody)
	case !utf8.ValidString(req.Body):
		return nil, errcode.Biz(errcode.BadField, "body is not UTF-8")
	case !protocol.ValidContentType(req.ContentType):
		return nil, errcode.Biz(errcode.BadField, "content_type must be at most %d characters of [A-Za-z0-9/.+_-], not %s",
			protocol.MaxContentTypeLen, protocol.ContentTypeRecall)
	}
	var conv string
	switch {
	case req.GroupId != "" && req.To == "":
		conv = "g:" + req.GroupId
		if !ids.ValidConv(conv) {
			return nil, errcode.Biz(errcode.BadField, "invalid group id")
		}
		g, err := h.memberGroup(ctx, req.GroupId, req.From)
		if err != nil {
			return nil, errcode.ToBiz(err)
		}
		if g == nil {
			return nil, errcode.Biz(errcode.Forbidden, "%q is not a member of the group", req.From)
		}
		if g.Dissolved {
			return nil, errcode.Biz(errcode.ConvNotFound, "group %q is dissolved", req.GroupId)
		}
	case req.To != "" && req.GroupId == "":
		if !ids.ValidUID(req.To) || req.To == req.From {
			return nil, errcode.Biz(errcode.BadField, "invalid recipient")
		}
		found, err := h.users.Existing(ctx, []string{req.From, req.To})
		if err != nil {
			return nil, errcode.ToBiz(err)
		}
		if !found[req.From] || !found[req.To] {
			return nil, errcode.Biz(errcode.UserNotFound, "sender or recipient does not exist")
		}
		conv = ids.P2P(req.From, req.To)
	default:
		return nil, errcode.Biz(errcode.BadField, "exactly one of to and group_id")
	}
	contentType := req.ContentType
	if contentType == "" {
		contentType = "text"
	}
	rec := &events.UpRecord{Kind: events.UpKind_SEND, Sender: req.From, Device: ServerDevice, ClientMsgId: req.ClientMsgId,
		To: req.To, ConvId: conv, ContentType: contentType, Body: req.Body, ReceivedAtMs: h.now().UnixMilli()}
	m, dup, err := h.throughPipeline(ctx, rec, req.WaitMs, nil)
	if err != nil {
		return nil, err
	}
	return &logic.SendResp{ConvId: conv, Seq: m.Seq, CreatedAtMs: m.CreatedAtMs, Duplicate: dup}, nil
}

// ServerDevice is the device of the records logic's own RPCs (Send,
// Recall) produce.
const ServerDevice = "server"

// maxWaitMs caps the wait_ms of Send and Recall.
const maxWaitMs = 30_000

// throughPipeline produces rec to the upstream topic, keyed by its
// conversation, so it is ordered, deduplicated and stored exactly like a
// client's record, and waits (waitMs, 0 meaning 5 s, at most maxWaitMs)
// until the pipeline has stored it; it returns the stored message, found
// by (conv, sender, client message id). A message stored before is
// returned as a duplicate without producing anything. The pipeline answers refusals to the
// sending connection, which an RPC does not have: a caller that can learn
// of a refusal passes check, which is called between polls, and whose
// error ends the wait and is returned.
func (h *Handler) throughPipeline(ctx context.Context, rec *events.UpRecord, waitMs int32, check func(context.Context) error) (*common.Message, bool, error) {
	wait := time.Duration(min(waitMs, maxWaitMs)) * time.Millisecond
	if wait <= 0 {
		wait = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	lookup := &dataproxy.GetMessageReq{ConvId: rec.ConvId, Sender: rec.Sender, ClientMsgId: rec.ClientMsgId}
	if m, err := h.dp.GetMessage(ctx, lookup); err == nil && m.Found {
		return m.Message, true, nil
	}
	done := make(chan error, 1)
	if err := h.prod.Produce(kafkax.TopicUp, []byte(rec.ConvId), kafkax.Encode(rec), func(err error) { done <- err }); err != nil {
		return nil, false, errcode.Biz(errcode.Unavailable, "queue the record: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			return nil, false, errcode.Biz(errcode.Unavailable, "queue the record: %v", err)
		}
	case <-ctx.Done():
		return nil, false, errcode.Biz(errcode.Unavailable, "timed out queueing the record; retry with the same client_msg_id")
	}
	// Wait until the pipeline has stored it.
	delay := 2 * time.Millisecond
	for {
		m, err := h.dp.GetMessage(ctx, lookup)
		if err == nil && m.Found {
			return m.Message, false, nil
		}
		if err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if c, _ := errcode.Of(err); !c.Retryable() {
				return nil, false, errcode.ToBiz(err)
			}
		}
		if check != nil && err == nil {
			if err := check(ctx); err != nil {
				return nil, false, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, false, errcode.Biz(errcode.Unavailable, "not stored within %v; retry with the same client_msg_id", wait)
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// Cursors returns users' inbox cursors for heartbeat replies.
func (h *Handler) Cursors(ctx context.Context, req *logic.CursorsReq) (*logic.CursorsResp, error) {
	if len(req.Uids) > maxBatch {
		return nil, errcode.Biz(errcode.BadRequest, "at most %d users per call", maxBatch)
	}
	resp, err := h.dp.GetUserCursors(ctx, &dataproxy.GetUserCursorsReq{Uids: req.Uids})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	return &logic.CursorsResp{Cursors: resp.Cursors}, nil
}
