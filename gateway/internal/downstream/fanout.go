// Package downstream delivers logic's records for this gateway (pushes,
// acks, errors, and complete frames logic encoded itself, such as read
// receipts, typing indicators and kicks) to local connections.
//
// Each record becomes one WebSocket frame, encoded once; the same bytes are
// queued to every target. A target is looked up by connection id AND user
// id, and must be open (hello sent): a stale route naming a reused or foreign
// connection id never reaches another user's connection. Targets are read
// straight from the Kafka message (Record), so a record for 10,000 targets
// costs the allocations of its one frame, not two per target. Queuing never
// blocks: a client too slow to take the frame is disconnected by its
// session (a full queue is written to the socket without blocking when the
// client has taken everything so far).
// When the Lookup is a Batcher, the writers of a record's targets are
// started together once the frame is queued to all of them.
//
// Concurrency: Fanout is safe for concurrent use. Consumer.Run is one
// goroutine that polls Kafka and delivers.
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
	// Routable reports whether pushes may go to the connection: it is
	// open (its hello is out). Replies to its own requests (acks and
	// errors) go to any connection that can still take frames: a client
	// may send before its hello arrives, and its message is stored then.
	Routable() bool
	// Binary reports whether the client chose MessagePack: it gets the
	// binary form of each frame, made once per record like the text form.
	Binary() bool
	// CloseWith closes the connection after what is queued, with a
	// WebSocket close code and reason.
	CloseWith(code uint16, reason string)
}

// Lookup finds the open connection with a conn id that belongs to a user.
// PushBytes takes the user id as bytes of the record and must not keep or
// allocate from them.
type Lookup interface {
	Push(uid string, connID int64) (Conn, bool)
	PushBytes(uid []byte, connID int64) (Conn, bool)
}

// Batcher is a Lookup whose connections' writers can be started together
// once a record's frame is queued to every target, instead of one at a
// time as each is queued (session.Batch): one hand-off to the writers per
// chunk of targets rather than per target.
type Batcher interface {
	Batch() Batch
}

// Batch queues frames to connections of one Lookup; Flush starts their
// writers. A Batch is used for one record by one goroutine, and not after
// Flush.
type Batch interface {
	Send(c Conn, frame []byte) error
	Flush()
}

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

// tally counts one record's deliveries.
type tally struct {
	frame      []byte
	bin        []byte // frame's MessagePack form, made for the first Binary target
	binErr     error
	kick       uint16
	reason     string
	sent, miss int
	batch      Batch // nil: each Send starts its connection's writer
	// reply: also for a connection not yet open. Acks and errors answer
	// its own requests; a kick (a frame with a close code) may name a
	// connection logic refused in the very Connect call that registers
	// it (the login policy's last-one-wins among logins registered
	// together), and may arrive before that call returns.
	reply bool
}

func (t *tally) deliver(c Conn, ok bool) {
	if !ok || (!t.reply && !c.Routable()) {
		t.miss++
		return
	}
	frame, err := t.frameFor(c)
	if err != nil {
		// Not expected (every frame is JSON from encoding/json or
		// AppendJSON), but a kick must close the connection even so.
		t.miss++
		if t.kick != 0 {
			c.CloseWith(t.kick, t.reason)
		}
		return
	}
	if t.batch != nil {
		err = t.batch.Send(c, frame)
	} else {
		err = c.Send(frame)
	}
	if err != nil {
		t.miss++
		return
	}
	t.sent++
	if t.kick != 0 {
		c.CloseWith(t.kick, t.reason)
	}
}

// frameFor returns the frame for c: the record's text frame, or its
// MessagePack form, encoded once for all the record's Binary targets.
func (t *tally) frameFor(c Conn) ([]byte, error) {
	if !c.Binary() {
		return t.frame, nil
	}
	if t.bin == nil && t.binErr == nil {
		t.bin, t.binErr = wsframe.MsgpackFrame(t.frame)
	}
	return t.bin, t.binErr
}

// DeliverRaw parses a Thrift-binary events.DownRecord and queues its frame
// to each of its targets, reading the targets in place. A BATCH record's
// records are delivered in order, and the frames of up to flushEvery of
// them are queued before their writers start, so a connection several of
// them address gets its frames in one write. One bad record of a batch is
// reported and skipped; the rest are delivered. It returns how many frames
// were accepted.
func (f *Fanout) DeliverRaw(b []byte) (int, error) { return f.deliverRaw(b, nil) }

// deliverRaw is DeliverRaw leaving out the records (inside a batch or not)
// that skip, when set, returns true for.
func (f *Fanout) deliverRaw(b []byte, skip func(*Record) bool) (int, error) {
	var rec Record
	if err := rec.Parse(b); err != nil {
		return 0, err
	}
	if rec.Kind != events.DownKind_BATCH {
		if skip != nil && skip(&rec) {
			return 0, nil
		}
		batch := f.batch()
		n, err := f.deliverRecord(&rec, batch)
		if batch != nil {
			batch.Flush()
		}
		return n, err
	}
	if f.obs != nil {
		f.obs.Record("batch")
	}
	batch := f.batch()
	var (
		sent, held int
		errs       []error
		inner      Record
	)
	err := rec.EachRecord(func(b []byte) {
		if err := inner.Parse(b); err != nil {
			errs = append(errs, err)
			return
		}
		if inner.Kind == events.DownKind_BATCH {
			errs = append(errs, errors.New("downstream: a batch record inside a batch"))
			return
		}
		if skip != nil && skip(&inner) {
			return
		}
		n, err := f.deliverRecord(&inner, batch)
		sent += n
		if err != nil {
			errs = append(errs, err)
		}
		// Start the writers every flushEvery records, so that a long
		// batch's frames start leaving while the rest are queued. (A
		// connection's queue that fills before its writer runs is not
		// taken for a slow client: the session writes it to the socket
		// on this goroutine, without blocking; see session.Session.Send.)
		if held++; held == flushEvery && batch != nil {
			batch.Flush()
			batch, held = f.batch(), 0
		}
	})
	if batch != nil {
		batch.Flush()
	}
	return sent, errors.Join(append(errs, err)...)
}

// flushEvery is how many records of a BATCH record are queued before the
// writers of their connections are started: an ack and a push for one
// connection still leave in one writev, and the writers need not wait for
// the end of a long batch. Nothing depends on a writer running between
// two flushes: a queue that fills first is written by the goroutine
// queuing to it (session.Session.Send), and only a queue full while the
// client's socket is backed up closes the connection as too slow.
const flushEvery = 16

// MinWriteQueue is the smallest per-connection write queue (-write-queue)
// the gateway accepts: room for the flushEvery frames one BATCH record
// may queue for a connection before its writer starts, twice over. A
// smaller queue would still be correct, but the fan-out goroutine would
// write to the socket itself every few frames.
const MinWriteQueue = 2 * flushEvery

// deliverRecord queues rec's frame to its targets through batch (nil: each
// target's writer starts as it is queued).
func (f *Fanout) deliverRecord(rec *Record, batch Batch) (int, error) {
	t, err := f.prepare(&rec.DownRecord, batch)
	if err != nil {
		return 0, err
	}
	err = rec.Targets(func(uid []byte, id int64) {
		c, ok := f.lookup.PushBytes(uid, id)
		t.deliver(c, ok)
	})
	f.count(t)
	return t.sent, err
}

// Deliver queues rec's frame to each of its targets and returns how many
// accepted it.
func (f *Fanout) Deliver(rec *events.DownRecord) (int, error) {
	batch := f.batch()
	t, err := f.prepare(rec, batch)
	if err != nil {
		return 0, err
	}
	for _, tg := range rec.Targets {
		if tg == nil {
			continue
		}
		c, ok := f.lookup.Push(tg.Uid, tg.ConnId)
		t.deliver(c, ok)
	}
	if batch != nil {
		batch.Flush()
	}
	f.count(t)
	return t.sent, nil
}

// batch returns a new Batch when the lookup makes them, else nil.
func (f *Fanout) batch() Batch {
	if b, ok := f.lookup.(Batcher); ok {
		return b.Batch()
	}
	return nil
}

func (f *Fanout) prepare(rec *events.DownRecord, batch Batch) (*tally, error) {
	frame, kind, err := Encode(rec)
	if f.obs != nil {
		f.obs.Record(kind)
	}
	if err != nil {
		return nil, err
	}
	t := &tally{frame: frame, batch: batch, reply: rec.Kind == events.DownKind_ACK || rec.Kind == events.DownKind_ERROR}
	if rec.CloseCode != 0 {
		if !validKick(rec.CloseCode) {
			return nil, fmt.Errorf("close code %d is not one a server may send", rec.CloseCode)
		}
		t.kick, t.reason = uint16(rec.CloseCode), rec.CloseReason
		t.reply = true
	}
	return t, nil
}

// validKick reports whether code may be sent in a close frame: a defined
// code other than the ones reserved for local use, or an application code.
func validKick(code int32) bool {
	c := ws.StatusCode(code)
	return code > 0 && code < 5000 && !c.IsNotUsed() && !c.IsProtocolReserved() &&
		c != ws.StatusNoMeaningYet && (!c.IsProtocolSpec() || c.IsProtocolDefined())
}

func (f *Fanout) count(t *tally) {
	if f.obs != nil {
		f.obs.Pushed(t.sent)
		f.obs.Missed(t.miss)
	}
}

// Encode returns the client frame for rec and a label for its kind. Pushes
// and acks, one of each for every message, are encoded without reflection
// (protocol's AppendJSON, byte for byte what encoding/json gives).
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
		msg := protocol.Message{
			Type: protocol.TypeMsg, Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
			ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs,
			Recalled: m.Recalled, RefSeq: m.RefSeq,
		}
		size := 160 + len(m.ConvId) + len(m.Sender) + len(m.Recipient) + len(m.ClientMsgId) + len(m.ContentType) + len(m.Body)
		return wsframe.FinishFrame(msg.AppendJSON(wsframe.FrameBuffer(size)), ws.OpText), kind, nil
	case events.DownKind_ACK:
		kind = "ack"
		a := rec.Ack
		if a == nil {
			return nil, kind, errors.New("ack record without ack")
		}
		ack := protocol.Ack{
			Type: protocol.TypeAck, ClientMsgID: a.ClientMsgId, Conv: a.ConvId, Seq: a.Seq,
			TS: a.CreatedAtMs, Duplicate: a.Duplicate,
		}
		return wsframe.FinishFrame(ack.AppendJSON(wsframe.FrameBuffer(96+len(a.ClientMsgId)+len(a.ConvId))), ws.OpText), kind, nil
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
	case events.DownKind_BATCH:
		return nil, "batch", errors.New("a batch record has no frame of its own")
	case events.DownKind_FRAME:
		// Logic encoded the client frame (one JSON object); it is written
		// as it is, in one text frame.
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
