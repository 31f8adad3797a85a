package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
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
// conversations, ping, the cursor and event frames (delivered, read,
// typing, recall) and the group operations logic answers. Bad requests get
// an error frame and the connection stays usable.

// request holds the fields of every client frame type; one Unmarshal
// decodes any of them. Fields only logic reads (a group operation's name
// and members) are not decoded here.
type request struct {
	Type        string     `json:"type"`
	ClientMsgID string     `json:"cmid"`
	To          string     `json:"to"`
	Group       string     `json:"group"`
	ContentType string     `json:"content_type"`
	Body        string     `json:"body"`
	RID         string     `json:"rid"`
	Conv        string     `json:"conv"`
	Seq         int64      `json:"seq"`
	After       afterField `json:"after"`
	Limit       int        `json:"limit"`
}

// afterField is sync's "after" (a seq). It is decoded leniently so that a
// bad value does not stop the rest of the frame (its rid) from being
// decoded; sync then rejects anything but an integer with the request's rid.
type afterField struct {
	n int64
	// bad: present, but not an integer that fits an int64.
	bad bool
}

// UnmarshalJSON records an integer, or that the value is something else.
// It never fails, so an odd "after" does not stop the rest of the frame
// (its rid, say) from being decoded.
func (a *afterField) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*a = afterField{}
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	*a = afterField{n: n, bad: err != nil}
	return nil
}

const defaultContentType = "text"

// Message dispatches one client text message; it runs on the connection's
// OnRequest goroutine and must not wait on the network.
func (s *Server) Message(sess *session.Session, text []byte) {
	var (
		req request
		err error
	)
	if sess.Binary() {
		// MessagePack is turned into the JSON it stands for, and from
		// there on the frame takes the JSON path: the same checks, errors
		// and limits for both encodings.
		buf := wsframe.GetBuf(2 * len(text))
		defer wsframe.PutBuf(buf)
		var js []byte
		js, err = msgpackToJSON(*buf, text)
		*buf = js[:0] // keep a grown buffer for the pool
		text = js
	}
	if err == nil {
		err = decodeRequest(text, &req)
	}
	if err != nil {
		// A bad frame counts against the rate like any other, so a flood
		// of them is answered by one kind of error at the same pace.
		var te *json.UnmarshalTypeError
		switch {
		case !sess.Allow(s.cfg.MsgRate):
			s.clientError(sess, errcode.RateLimited, "too many requests; slow down", "", "")
		case errors.Is(err, protocol.ErrBadMsgpack) || errors.Is(err, errNotMap):
			s.clientError(sess, errcode.BadMsgpack, err.Error(), "", "")
		case errors.As(err, &te) && te.Field != "":
			s.clientError(sess, errcode.BadField, "field "+te.Field+" has the wrong type", req.ClientMsgID, req.RID)
		case errors.Is(err, errNotObject) || errors.As(err, &te):
			s.clientError(sess, errcode.BadJSON, errNotObject.Error(), "", "")
		default:
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
	case protocol.TypeDelivered:
		s.opCursor(sess, &req, events.UpKind_DELIVERED)
	case protocol.TypeRead:
		s.opCursor(sess, &req, events.UpKind_READ)
	case protocol.TypeTyping:
		s.opTyping(sess, &req)
	case protocol.TypeRecall:
		s.opRecall(sess, &req)
	case protocol.TypeGroupCreate, protocol.TypeGroupAdd, protocol.TypeGroupRemove, protocol.TypeGroupLeave,
		protocol.TypeGroupDissolve, protocol.TypeGroupInfo, protocol.TypeGroupMembers, protocol.TypeGroups:
		s.opClientCall(sess, &req, text)
	case "":
		s.clientError(sess, errcode.UnknownType, "missing type", req.ClientMsgID, req.RID)
	default:
		s.clientError(sess, errcode.UnknownType, "unknown type "+clip(req.Type), req.ClientMsgID, req.RID)
	}
}

// errNotMap answers a MessagePack frame that is a valid value but not a map.
var errNotMap = errors.New("frame is not a MessagePack map")

// msgpackToJSON appends to dst the JSON form of a client's MessagePack
// frame, which must be one map. Whatever is wrong with a frame that is not
// valid MessagePack is said first (with its position), then that a valid
// value is not a map.
func msgpackToJSON(dst, mp []byte) ([]byte, error) {
	js, err := protocol.AppendJSONFromMsgpack(dst, mp)
	if err == nil && !isMsgpackMap(mp[0]) {
		return dst, errNotMap
	}
	return js, err
}

// isMsgpackMap reports whether b starts a MessagePack map (fixmap, map 16,
// map 32).
func isMsgpackMap(b byte) bool { return b&0xf0 == 0x80 || b == 0xde || b == 0xdf }

// cmidRule is the error message of a cmid protocol.ValidClientMsgID refuses.
const cmidRule = "cmid must be 1-64 bytes and not start with " + protocol.ReservedCMIDPrefix

// opSend validates a send and produces it upstream, keyed by its
// conversation: to a user (To) or to a group (Group, conversation
// "g:<group>"), exactly one of the two. Sending to yourself is refused: a
// one-to-one conversation needs two different users (the id ids.P2P(a, a)
// is not a valid conversation). Group membership is logic's to check.
func (s *Server) opSend(sess *session.Session, req *request) {
	cmid := req.ClientMsgID
	if !protocol.ValidClientMsgID(cmid) {
		s.clientError(sess, errcode.BadField, cmidRule, clip(cmid), "")
		return
	}
	var conv string
	switch {
	case req.Group != "" && req.To != "":
		s.clientError(sess, errcode.BadField, "give either to or group, not both", cmid, "")
		return
	case req.Group != "":
		conv = "g:" + req.Group
		if !ids.ValidConv(conv) {
			s.clientError(sess, errcode.BadField, "group is not a valid group id", cmid, "")
			return
		}
	case !ids.ValidUID(req.To):
		s.clientError(sess, errcode.BadField, "to is not a valid user id", cmid, "")
		return
	case req.To == sess.UID():
		s.clientError(sess, errcode.BadField, "cannot send to yourself", cmid, "")
		return
	default:
		conv = ids.P2P(sess.UID(), req.To)
	}
	switch {
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
	} else if !protocol.ValidContentType(ct) {
		s.clientError(sess, errcode.BadField, "content_type must be 1-64 characters of [A-Za-z0-9/.+_-], not gochat.recall", cmid, "")
		return
	}
	rec := s.upRecord(sess, events.UpKind_SEND)
	rec.ClientMsgId, rec.To, rec.ConvId, rec.ContentType, rec.Body = cmid, req.To, conv, ct, req.Body
	s.produce(sess, rec, true)
}

// upRecord starts an upstream record of kind from this connection.
func (s *Server) upRecord(sess *session.Session, kind events.UpKind) *events.UpRecord {
	return &events.UpRecord{
		Kind:         kind,
		Sender:       sess.UID(),
		Device:       sess.Device(),
		GatewayId:    s.cfg.ID,
		ConnId:       sess.ConnID(),
		ReceivedAtMs: time.Now().UnixMilli(),
	}
}

// produce writes rec upstream. A record Kafka refuses is answered with
// "unavailable" (and rec's cmid) when tell is set: sends and recalls, which
// the client retries until it has an answer. Cursors and typing frames
// are not answered; a lost one is counted and the client's next one makes
// up for it.
func (s *Server) produce(sess *session.Session, rec *events.UpRecord, tell bool) {
	cmid := rec.ClientMsgId
	err := s.deps.Up.Send(rec, func(err error) {
		if err != nil {
			s.produceFailed(sess, cmid, tell, err)
			return
		}
		s.m.Produced.Inc()
	})
	if err != nil {
		s.produceFailed(sess, cmid, tell, err)
	}
}

// opCursor moves the sender's delivered or read cursor of a conversation.
// Logic checks that the sender is in it and answers only errors.
func (s *Server) opCursor(sess *session.Session, req *request, kind events.UpKind) {
	switch {
	case !ids.ValidConv(req.Conv):
		s.clientError(sess, errcode.BadField, "conv is not a valid conversation id", "", "")
		return
	case req.Seq < 0:
		s.clientError(sess, errcode.BadField, "seq must not be negative", "", "")
		return
	}
	rec := s.upRecord(sess, kind)
	rec.ConvId, rec.Seq = req.Conv, req.Seq
	s.produce(sess, rec, false)
}

// typingEvery is how often one connection may send a typing indicator;
// more are dropped without an answer (and counted).
const typingEvery = time.Second

// opTyping passes a typing indicator to the other user of a one-to-one
// chat. Nothing is stored, so a burst is simply thinned out.
func (s *Server) opTyping(sess *session.Session, req *request) {
	switch {
	case !ids.ValidUID(req.To):
		s.clientError(sess, errcode.BadField, "to is not a valid user id", "", "")
		return
	case req.To == sess.UID():
		s.clientError(sess, errcode.BadField, "cannot type to yourself", "", "")
		return
	}
	if !sess.AllowTyping(typingEvery) {
		s.m.TypingDropped.Inc()
		return
	}
	rec := s.upRecord(sess, events.UpKind_TYPING)
	rec.To, rec.ConvId = req.To, ids.P2P(sess.UID(), req.To)
	s.produce(sess, rec, false)
}

// opRecall asks logic to recall the sender's message Seq of Conv; logic
// checks that it is the sender's and within the recall window, and answers
// like a send (ack or error with the cmid).
func (s *Server) opRecall(sess *session.Session, req *request) {
	cmid := req.ClientMsgID
	switch {
	case !protocol.ValidClientMsgID(cmid):
		s.clientError(sess, errcode.BadField, cmidRule, clip(cmid), "")
		return
	case !ids.ValidConv(req.Conv):
		s.clientError(sess, errcode.BadField, "conv is not a valid conversation id", cmid, "")
		return
	case req.Seq <= 0:
		s.clientError(sess, errcode.BadField, "seq must be positive", cmid, "")
		return
	}
	rec := s.upRecord(sess, events.UpKind_RECALL)
	rec.ClientMsgId, rec.ConvId, rec.Seq = cmid, req.Conv, req.Seq
	s.produce(sess, rec, true)
}

// produceFailed reports a record Kafka refused. A record over Kafka's size
// limit (librdkafka's message.max.bytes, checked in the produce call, or
// the broker's or topic's) is answered too_large: sending it again would
// fail again, so the client must not be told to retry (Validate keeps
// MaxBody within MaxRecord, so only a broker or topic with a lower limit
// than the producer gets here). Any other failure is "unavailable".
func (s *Server) produceFailed(sess *session.Session, cmid string, tell bool, err error) {
	s.m.ProduceErrors.Inc()
	s.log.Warn("upstream produce failed", "conn", sess.ConnID(), "uid", sess.UID(), "err", err)
	if !tell {
		return
	}
	if tooLarge(err) {
		s.sendError(sess, errcode.TooLarge, "message too large for the message log", cmid, "")
		return
	}
	s.sendError(sess, errcode.Unavailable, "message not accepted; retry", cmid, "")
}

// tooLarge reports whether err is Kafka refusing a record over its size
// limit.
func tooLarge(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Code() == kafka.ErrMsgSizeTooLarge
}

func (s *Server) opSync(sess *session.Session, req *request) {
	switch {
	case len(req.RID) > protocol.MaxRequestIDLen:
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	case !ids.ValidConv(req.Conv):
		s.clientError(sess, errcode.BadField, "conv is not a valid conversation id", "", req.RID)
		return
	case req.After.bad:
		s.clientError(sess, errcode.BadField, "after must be an integer", "", req.RID)
		return
	case req.After.n < 0:
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
	rid, conv, after, uid := req.RID, req.Conv, req.After.n, sess.UID()
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

// message is a stored message as sync returns it (without a type). The
// pushed "msg" frame is the same object, encoded by downstream.Encode.
func message(m *common.Message) protocol.Message {
	return protocol.Message{Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
		ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs,
		Recalled: m.Recalled, RefSeq: m.RefSeq}
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
	// Logic caps the limit; a huge one must not wrap to a negative int32.
	rid, limit, uid := req.RID, min(req.Limit, math.MaxInt32), sess.UID()
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
				out.Items = append(out.Items, conversation(c))
			}
		}
		s.reply(sess, out)
	})
}

func conversation(c *common.Conversation) protocol.Conversation {
	return protocol.Conversation{Conv: c.ConvId, Kind: c.Kind, Peer: c.Peer, Name: c.Name,
		LastSeq: c.LastSeq, UpdatedAt: c.UpdatedAtMs, ReadSeq: c.ReadSeq, DeliveredSeq: c.DeliveredSeq,
		Unread: c.Unread}
}

// opPing answers a JSON ping with a pong carrying the user's inbox cursor;
// the cursor batcher (cursors.go) reads the cursors of many pings in one
// call and answers them.
func (s *Server) opPing(sess *session.Session, req *request) {
	if len(req.RID) > protocol.MaxRequestIDLen {
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	}
	s.cursors.add(sess, req.RID)
}

// opClientCall passes a group operation to logic as the client wrote it
// and writes logic's reply frame back as it is. Logic validates the fields
// and decides who may do what; the gateway adds who is asking.
func (s *Server) opClientCall(sess *session.Session, req *request, text []byte) {
	if len(req.RID) > protocol.MaxRequestIDLen {
		s.clientError(sess, errcode.BadField, "rid longer than 64 bytes", "", clip(req.RID))
		return
	}
	call := &logic.ClientCallReq{Uid: sess.UID(), Device: sess.Device(), GatewayId: s.cfg.ID,
		ConnId: sess.ConnID(), Frame: bytes.Clone(text)} // text dies when Message returns
	rid := req.RID
	s.runRPC(sess, rid, func(ctx context.Context) {
		resp, err := s.deps.Logic.ClientCall(ctx, call)
		if err != nil {
			s.rpcFailed(sess, "client_call", rid, err)
			return
		}
		// Logic encodes the reply; an empty or broken one would reach the
		// client as garbage, so it is refused like any failed call.
		if len(resp.Frame) == 0 || !json.Valid(resp.Frame) {
			s.rpcFailed(sess, "client_call", rid, errcode.New(errcode.Internal, "logic sent a reply that is not JSON"))
			return
		}
		_ = sess.Send(wsframe.Frame(ws.OpText, resp.Frame))
	})
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
