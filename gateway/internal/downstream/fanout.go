// Package downstream delivers logic's records for this gateway (pushes,
// acks, errors, and complete frames logic encoded itself, such as read
// receipts, typing indicators and kicks) to local connections.
//
// Each record becomes one WebSocket frame, encoded once; the same bytes are
// queued to every target. A target is looked up by connection id AND user
// id, and must be open (hello sent): a stale route naming a reused or foreign
// connection id never reaches another user's connection. Queuing never
// blocks: a client too slow to take the frame is disconnected by its session.
//
// Concurrency: Fanout is safe for concurrent use. Consumer.Run is one
// goroutine that polls Kafka, delivers, then stores the record's offset.
package downstream

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// Conn is a local connection as the fan-out sees it.
type Conn interface {
	Send(frame []byte) error
	Routable() bool
	// CloseWith closes the connection after what is queued, with a
	// WebSocket close code and reason.
	CloseWith(code uint16, reason string)
}

// Lookup finds the connection with conn id that belongs to uid.
type Lookup func(uid string, connID int64) (Conn, bool)

// Observer receives counts for metrics.
type Observer interface {
	Record(kind string)
	Pushed(n int)
	Missed(n int)
}

// Fanout turns records into frames and queues them.
type Fanout struct {
	lookup Lookup
	obs    Observer
}

// NewFanout returns a Fanout.
func NewFanout(lookup Lookup, obs Observer) *Fanout {
	return &Fanout{lookup: lookup, obs: obs}
}

// Deliver queues rec's frame to each of its targets and returns how many
// accepted it.
func (f *Fanout) Deliver(rec *events.DownRecord) (int, error) {
	frame, kind, err := Encode(rec)
	if f.obs != nil {
		f.obs.Record(kind)
	}
	if err != nil {
		return 0, err
	}
	sent, missed := 0, 0
	for _, t := range rec.Targets {
		if t == nil {
			continue
		}
		c, ok := f.lookup(t.Uid, t.ConnId)
		if !ok || !c.Routable() {
			missed++
			continue
		}
		if c.Send(frame) == nil {
			sent++
		} else {
			missed++
		}
		if rec.Kind == events.DownKind_FRAME && rec.CloseCode != 0 {
			c.CloseWith(uint16(rec.CloseCode), rec.CloseReason)
		}
	}
	if f.obs != nil {
		f.obs.Pushed(sent)
		f.obs.Missed(missed)
	}
	return sent, nil
}

// Encode returns the client frame for rec and a label for its kind.
func Encode(rec *events.DownRecord) ([]byte, string, error) {
	var (
		v    any
		kind string
	)
	switch rec.Kind {
	case events.DownKind_PUSH:
		kind = "push"
		m := rec.Message
		if m == nil {
			return nil, kind, errors.New("push record without message")
		}
		v = protocol.Message{
			Type: protocol.TypeMsg, Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
			ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs,
		}
	case events.DownKind_ACK:
		kind = "ack"
		a := rec.Ack
		if a == nil {
			return nil, kind, errors.New("ack record without ack")
		}
		v = protocol.Ack{
			Type: protocol.TypeAck, ClientMsgID: a.ClientMsgId, Conv: a.ConvId, Seq: a.Seq,
			TS: a.CreatedAtMs, Duplicate: a.Duplicate,
		}
	case events.DownKind_ERROR:
		kind = "error"
		e := rec.Error
		if e == nil {
			return nil, kind, errors.New("error record without error")
		}
		v = protocol.Error{
			Type: protocol.TypeError, Code: e.Code, Reason: errcode.Code(e.Code).String(),
			Message: e.Message, ClientMsgID: e.ClientMsgId,
		}
	case events.DownKind_FRAME:
		// Logic encoded the client frame; it is written as it is.
		if len(rec.Frame) == 0 {
			return nil, "frame", errors.New("frame record without frame")
		}
		if !json.Valid(rec.Frame) {
			return nil, "frame", errors.New("frame record is not JSON")
		}
		return wsframe.Frame(ws.OpText, rec.Frame), "frame", nil
	default:
		return nil, "unknown", fmt.Errorf("unknown downstream kind %d", rec.Kind)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, kind, err
	}
	return wsframe.Frame(ws.OpText, b), kind, nil
}
