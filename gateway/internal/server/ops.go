package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/session"
	"github.com/gochat-im/gochat/gateway/internal/workpool"
	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// This file handles client operations (pkg/protocol): send, sync,
// conversations, ping. Bad requests get an error frame and the connection
// stays usable.

// request holds the fields of every client frame type; one Unmarshal
// decodes any of them.
type request struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"cmid"`
	To          string `json:"to"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	RID         string `json:"rid"`
	Conv        string `json:"conv"`
	After       int64  `json:"after"`
	Limit       int    `json:"limit"`
}

const (
	defaultContentType = "text"
	maxContentTypeLen  = 64
)

// Message dispatches one client text message; it runs on the connection's
// OnRequest goroutine and must not wait on the network.
func (s *Server) Message(sess *session.Session, text []byte) {
	var req request
	if err := json.Unmarshal(text, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			s.clientError(sess, errcode.BadField, "field "+te.Field+" has the wrong type", req.ClientMsgID, req.RID)
		} else {
			s.clientError(sess, errcode.BadJSON, "frame is not valid JSON", "", "")
		}
		return
	}
	if !sess.Allow(s.cfg.MsgRate) {
		s.clientError(sess, errcode.RateLimited, "too many requests; slow down", req.ClientMsgID, req.RID)
		return
	}
	switch req.Type {
	case protocol.TypeSend:
		s.opSend(sess, &req)
	case protocol.TypeSync:
		s.opSync(sess, &req)
	case protocol.TypeConversations:
		s.opConversations(sess, &req)
	case protocol.TypePing:
		s.opPing(sess, &req)
	case "":
		s.clientError(sess, errcode.UnknownType, "missing type", req.ClientMsgID, req.RID)
	default:
		s.clientError(sess, errcode.UnknownType, "unknown type "+clip(req.Type), req.ClientMsgID, req.RID)
	}
}

// opSend validates a send and produces it upstream. Sending to yourself is
// refused: a one-to-one conversation needs two different users (the id
// ids.P2P(a, a) is not a valid conversation).
func (s *Server) opSend(sess *session.Session, req *request) {
	cmid := req.ClientMsgID
	switch {
	case len(cmid) == 0 || len(cmid) > protocol.MaxClientMsgIDLen:
		s.clientError(sess, errcode.BadField, "cmid must be 1-64 bytes", clip(cmid), "")
		return
	case !ids.ValidUID(req.To):
		s.clientError(sess, errcode.BadField, "to is not a valid user id", cmid, "")
		return
	case req.To == sess.UID():
		s.clientError(sess, errcode.BadField, "cannot send to yourself", cmid, "")
		return
	case len(req.Body) > s.cfg.MaxBody:
		s.clientError(sess, errcode.TooLarge, "body over the size limit", cmid, "")
		return
	case req.Body == "":
		s.clientError(sess, errcode.BadField, "body is empty", cmid, "")
		return
	}
	ct := req.ContentType
	if ct == "" {
		ct = defaultContentType
	} else if !validContentType(ct) {
		s.clientError(sess, errcode.BadField, "content_type must be 1-64 characters of [A-Za-z0-9/.+_-]", cmid, "")
		return
	}
	rec := &events.UpRecord{
		Kind:         events.UpKind_SEND,
		Sender:       sess.UID(),
		Device:       sess.Device(),
		GatewayId:    s.cfg.ID,
		ConnId:       sess.ConnID(),
		ClientMsgId:  cmid,
		To:           req.To,
		ConvId:       ids.P2P(sess.UID(), req.To),
		ContentType:  ct,
		Body:         req.Body,
		ReceivedAtMs: time.Now().UnixMilli(),
	}
	err := s.deps.Up.Send(rec, func(err error) {
		if err != nil {
			s.produceFailed(sess, cmid, err)
			return
		}
		s.m.Produced.Inc()
	})
	if err != nil {
		s.produceFailed(sess, cmid, err)
	}
}

func (s *Server) produceFailed(sess *session.Session, cmid string, err error) {
	s.m.ProduceErrors.Inc()
	s.log.Warn("upstream produce failed", "conn", sess.ConnID(), "uid", sess.UID(), "err", err)
	s.sendError(sess, errcode.Unavailable, "message not accepted; retry", cmid, "")
}

func validContentType(ct string) bool {
	if len(ct) > maxContentTypeLen {
		return false
	}
	for i := 0; i < len(ct); i++ {
		c := ct[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '/', c == '.', c == '+', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func (s *Server) opSync(sess *session.Session, req *request) {
	switch {
	case len(req.RID) > protocol.MaxRequestIDLen:
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	case !ids.ValidConv(req.Conv):
		s.clientError(sess, errcode.BadField, "conv is not a valid conversation id", "", req.RID)
		return
	case req.After < 0:
		s.clientError(sess, errcode.BadField, "after must not be negative", "", req.RID)
		return
	case req.Limit < 0:
		s.clientError(sess, errcode.BadField, "limit must not be negative", "", req.RID)
		return
	}
	limit := req.Limit
	if limit == 0 {
		limit = protocol.DefaultSyncLimit
	}
	limit = min(limit, protocol.MaxSyncLimit)
	rid, conv, after, uid := req.RID, req.Conv, req.After, sess.UID()
	s.runRPC(sess, rid, func(ctx context.Context) {
		resp, err := s.deps.Logic.Sync(ctx, &logic.SyncReq{Uid: uid, ConvId: conv, AfterSeq: after, Limit: int32(limit)})
		if err != nil {
			s.rpcFailed(sess, "sync", rid, err)
			return
		}
		out := protocol.SyncResp{Type: protocol.TypeSync, RID: rid, Conv: conv, HasMore: resp.HasMore,
			LastSeq: resp.LastSeq, Messages: make([]protocol.Message, 0, len(resp.Messages))}
		for _, m := range resp.Messages {
			if m != nil {
				out.Messages = append(out.Messages, message(m))
			}
		}
		s.reply(sess, out)
	})
}

func message(m *common.Message) protocol.Message {
	return protocol.Message{Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
		ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs}
}

func (s *Server) opConversations(sess *session.Session, req *request) {
	switch {
	case len(req.RID) > protocol.MaxRequestIDLen:
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	case req.Limit < 0:
		s.clientError(sess, errcode.BadField, "limit must not be negative", "", req.RID)
		return
	}
	rid, limit, uid := req.RID, req.Limit, sess.UID()
	s.runRPC(sess, rid, func(ctx context.Context) {
		resp, err := s.deps.Logic.Conversations(ctx, &logic.ConversationsReq{Uid: uid, Limit: int32(limit)})
		if err != nil {
			s.rpcFailed(sess, "conversations", rid, err)
			return
		}
		out := protocol.ConversationsResp{Type: protocol.TypeConversations, RID: rid,
			Items: make([]protocol.Conversation, 0, len(resp.Items))}
		for _, c := range resp.Items {
			if c != nil {
				out.Items = append(out.Items, protocol.Conversation{Conv: c.ConvId, Kind: c.Kind, Peer: c.Peer,
					LastSeq: c.LastSeq, UpdatedAt: c.UpdatedAtMs})
			}
		}
		s.reply(sess, out)
	})
}

func (s *Server) opPing(sess *session.Session, req *request) {
	if len(req.RID) > protocol.MaxRequestIDLen {
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	}
	s.reply(sess, protocol.Pong{Type: protocol.TypePong, RID: req.RID, TS: time.Now().UnixMilli()})
}

// runRPC runs fn on the RPC worker pool with a bounded context; when the
// pool's queue is full the client is told to retry.
func (s *Server) runRPC(sess *session.Session, rid string, fn func(ctx context.Context)) {
	ok := s.rpc.Submit(workpool.Func(func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RPCTimeout)
		defer cancel()
		fn(ctx)
	}))
	if !ok {
		s.m.RPCRejected.Inc()
		s.sendError(sess, errcode.Unavailable, "server busy; retry", "", rid)
	}
}

func (s *Server) rpcFailed(sess *session.Session, method, rid string, err error) {
	code, msg := errcode.Of(err)
	if code >= 5000 {
		s.m.RPCErrors.WithLabelValues(method).Inc()
		s.log.Warn("logic call failed", "method", method, "conn", sess.ConnID(), "uid", sess.UID(), "err", err)
		msg = "service unavailable; retry"
	}
	s.sendError(sess, code, msg, "", rid)
}

// clientError answers a bad request.
func (s *Server) clientError(sess *session.Session, code errcode.Code, msg, cmid, rid string) {
	s.m.ClientErrors.WithLabelValues(code.String()).Inc()
	s.sendError(sess, code, msg, cmid, rid)
}

func (s *Server) sendError(sess *session.Session, code errcode.Code, msg, cmid, rid string) {
	s.reply(sess, protocol.Error{Type: protocol.TypeError, Code: int32(code), Reason: code.String(),
		Message: msg, ClientMsgID: cmid, RID: rid})
}

func (s *Server) reply(sess *session.Session, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode reply", "err", err)
		return
	}
	_ = sess.Send(wsframe.Frame(ws.OpText, b))
}

// clip bounds client-supplied strings echoed back in errors.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
