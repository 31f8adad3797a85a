// Package session holds the state of one client connection: its place in
// the handshake -> registering -> open -> closing -> closed life cycle, the
// WebSocket read side (request head, frame decoder, fragmented message) and
// the serialised write side.
//
// Reads: netpoll runs OnRequest for a connection on one goroutine at a
// time; OnReadable consumes every readable byte on each call (netpoll keeps
// calling while input remains) and hands complete text messages to the
// Handler on that goroutine.
//
// Writes: every write goes through Send (or a Batch), which appends an
// already encoded frame to a bounded per-connection queue; one writer at a
// time drains a session's queue (see writer.go). The writer sends what
// waits with one write(2) or writev(2) straight to the non-blocking
// socket, so the common case costs one system call and no copy; only
// when the socket is full do the rest go into netpoll's output buffer, to
// be sent by a blocking Flush on a goroutine of its own, which fails after
// the write timeout for a client that does not read. The queue is bounded
// in frames (WriteQueue) and in bytes (WriteQueueBytes, counting what
// waits in netpoll's output buffer too). A queue that reaches a bound
// while the socket has taken everything written so far only means its
// writer has not run yet (a burst, such as one BATCH record holding a
// thousand acks for the connection): the goroutine queuing the frame
// writes what waits to the socket itself, without blocking, and queues the
// frame. Only a queue at a bound while the socket is backed up means the
// client reads too slowly: the frames still waiting are replaced by a
// close frame with code 1008 and the connection closes, so it never grows
// memory. Frames are never modified after Send, so one encoded push is
// shared by every target. A Batch (the fan-out of one downstream record)
// starts the writers of all its targets at once, a chunk of sessions per
// pool task, instead of one pool task and one wake-up per target.
//
// Lock order: ioMu before wmu; wmu before nothing. ioMu orders writes to
// the socket and into netpoll's output buffer against closing, which
// closes the socket and releases that buffer: Kill and OnClosed set
// ioClosed under it before either happens. Whoever writes takes the
// frames off the queue and writes them under one hold of ioMu, so frames
// leave in the order they were queued even when the goroutine queuing a
// frame writes ahead of the queue's writer (see queue).
package session

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/conntable"
	"github.com/gochat-im/gochat/gateway/internal/upgrade"
	"github.com/gochat-im/gochat/gateway/internal/workpool"
	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// State is where a session is in its life cycle.
type State int32

// States, in the only order they are entered.
const (
	// StateHandshake: reading the HTTP upgrade request.
	StateHandshake State = iota
	// StateRegistering: upgraded and authenticated, waiting for logic to
	// accept the route; not yet reachable by pushes.
	StateRegistering
	// StateOpen: hello sent; pushes are delivered.
	StateOpen
	// StateClosing: a close frame (or HTTP error) is queued; input is
	// discarded and the connection closes once the queue is flushed.
	StateClosing
	// StateClosed: the connection is gone.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateHandshake:
		return "handshake"
	case StateRegistering:
		return "registering"
	case StateOpen:
		return "open"
	case StateClosing:
		return "closing"
	}
	return "closed"
}

// Errors returned by Send.
var (
	ErrClosed = errors.New("session: closed")
	ErrSlow   = errors.New("session: client too slow; disconnected")
)

// Handler is the server's side of a session. Its methods run on the
// connection's OnRequest goroutine except Closed, which runs once from
// netpoll's close callback.
type Handler interface {
	// Handshake answers a complete request head. It must either call
	// Upgraded (and queue the response with Send) or Reject.
	Handshake(s *Session, head []byte)
	// HeadTooLarge is called when the request head passes the limit.
	HeadTooLarge(s *Session)
	// Message handles one complete message: valid UTF-8 text, or for a
	// Binary session the payload of a binary message (MessagePack, not
	// yet checked). It is only valid during the call.
	Message(s *Session, text []byte)
	// Closed is called once when the connection is gone.
	Closed(s *Session)
}

// Observer receives counts for metrics.
type Observer interface {
	FrameIn()
	FramesOut(n int)
	SlowClient()
	Flooded()
}

// Env is what every session of a server shares.
type Env struct {
	Handler Handler
	Obs     Observer
	// Writers drains write queues; see the package comment.
	Writers *workpool.Pool
	// MaxFrame limits a frame's payload and a reassembled message.
	MaxFrame int64
	// MaxHead limits the request head.
	MaxHead int
	// WriteQueue is how many frames may wait for one connection, and
	// WriteQueueBytes how many bytes may wait for it, in its queue and in
	// netpoll's output buffer together (at most 1 GiB; 0 means no byte
	// bound; one frame of any size is let in when nothing waits). A
	// connection over either while its socket is backed up is too slow
	// (see the package comment).
	WriteQueue      int
	WriteQueueBytes int
	// SlowClose is the close frame sent to a client whose write queue
	// overflowed (code 1008); built once, shared by every session.
	SlowClose []byte
	// FrameRate is the most frames per second a connection may send, in
	// the window Allow counts (0 or less: no limit). Complete messages are
	// counted by the handler through Allow; the reader counts control
	// frames and continuations against the same limit, so that a flood of
	// pings, pongs or empty continuations costs as much as a flood of
	// messages. Past the limit, control frames are dropped unanswered;
	// past FloodFactor times the limit, in one window, the connection is
	// closed with 1008.
	FrameRate int
	// MaxBacklog bounds the bytes a connection has sent and the gateway
	// has not handled yet: netpoll reads a socket into memory as fast as
	// the client writes, whatever the handler keeps up with, so a client
	// that writes faster than its frames are handled is closed with 1008
	// past this many (0: no bound).
	MaxBacklog int
	// Now returns the time in unix nanoseconds.
	Now func() int64
	Log *slog.Logger

	chunks  sync.Pool // *chunk, Batch's pool tasks
	batches sync.Pool // *Batch
}

// Session is one client connection.
//
// It is kept small (192 bytes, checked by TestSessionSize) because a
// gateway holds hundreds of thousands of them: the request head buffer
// exists only while a head arrives in pieces, user and device share one
// string, the connection table links a user's sessions through a field
// here instead of allocating, and the session is itself the context
// netpoll hands back to OnRequest (no context value per connection).
type Session struct {
	env  *Env
	conn netpoll.Connection
	id   int64
	// ident is "<uid>\x00<device>", set once by Upgraded, before the
	// session is published in the connection table; sep is the index of
	// the separator.
	ident string
	link  conntable.Link[*Session]

	state    atomic.Int32
	flags    atomic.Uint32 // flagRegistered, flagDiscQueued, flagFinished, flagBinary
	lastRead atomic.Int64  // unix nanos
	stateAt  atomic.Int64  // when the state last changed; accept time while handshaking

	// Read side: only the OnRequest goroutine (and OnClosed, which netpoll
	// runs when no OnRequest is active).
	head upgrade.Head // a request head that arrived in pieces
	dec  wsframe.Decoder
	msg  *[]byte // fragmented text message being reassembled
	// rateWin is the rate-limit window (seconds on the session clock
	// modulo 2^16), rateN the messages counted in it (saturating).
	rateWin uint16
	rateN   uint16
	// typingAt is when the last typing indicator was let through, in
	// milliseconds of the session clock modulo 2^32 (AllowTyping).
	typingAt uint32

	ioMu sync.Mutex
	wmu  sync.Mutex
	wq   [][]byte // frames waiting for the writer
	sep  uint8
	// scheduled: a writer owns the queue. closeAfter: close the connection
	// once the queue is flushed; no frame is accepted after that.
	scheduled  bool
	closeAfter bool
	// wbits (ioClosed, backlog) is guarded by ioMu.
	wbits uint8
	// wbytes is the bytes of the frames in wq, of the frames a writer
	// has taken from wq and is writing (under ioMu), and of netpoll's
	// output buffer (the backlog): what the client has not taken yet.
	// Guarded by wmu.
	wbytes uint32
}

const (
	flagRegistered = 1 << iota
	flagDiscQueued
	flagFinished
	// flagBinary: the client chose the MessagePack subprotocol; set
	// before the session is published and never cleared.
	flagBinary
)

// wbits.
const (
	// ioClosed: the connection is closing; nothing may be written.
	ioClosed = 1 << iota
	// backlog: netpoll's output buffer holds bytes the socket did not
	// take; a blocking Flush must send them before anything else.
	backlog
)

func (s *Session) setFlag(f uint32) bool {
	for {
		old := s.flags.Load()
		if old&f != 0 {
			return false
		}
		if s.flags.CompareAndSwap(old, old|f) {
			return true
		}
	}
}

// New returns a session for conn in the handshake state.
func New(env *Env, conn netpoll.Connection, id int64) *Session {
	now := env.Now()
	s := &Session{env: env, conn: conn, id: id}
	s.lastRead.Store(now)
	s.stateAt.Store(now)
	return s
}

// Deadline, Done, Err and Value make a Session the context.Context that
// netpoll stores for the connection and passes to OnRequest; see
// FromContext.
func (s *Session) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns nil: a session's context is never cancelled.
func (s *Session) Done() <-chan struct{} { return nil }

// Err returns nil.
func (s *Session) Err() error { return nil }

// Value returns nil.
func (s *Session) Value(any) any { return nil }

// FromContext returns the session of a connection from the context netpoll
// passes to OnRequest.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.(*Session)
	return s, ok
}

// TableLink is the connection table's bookkeeping (conntable.Conn).
func (s *Session) TableLink() *conntable.Link[*Session] { return &s.link }

// ConnID is the process-unique connection id.
func (s *Session) ConnID() int64 { return s.id }

// UID is the authenticated user ("" during the handshake).
func (s *Session) UID() string { return s.ident[:s.sep] }

// Device is the authenticated device ("" during the handshake).
func (s *Session) Device() string {
	if s.ident == "" {
		return ""
	}
	return s.ident[s.sep+1:]
}

// State returns the current state.
func (s *Session) State() State { return State(s.state.Load()) }

// Routable reports whether pushes may be delivered.
func (s *Session) Routable() bool { return s.State() == StateOpen }

// LastRead returns when input last arrived (unix nanos).
func (s *Session) LastRead() int64 { return s.lastRead.Load() }

// StateSince returns when the state last changed (unix nanos).
func (s *Session) StateSince() int64 { return s.stateAt.Load() }

// Registered reports whether logic accepted the route.
func (s *Session) Registered() bool { return s.flags.Load()&flagRegistered != 0 }

// RemoteAddr is the peer's address, for logs.
func (s *Session) RemoteAddr() string {
	if a := s.conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// advance moves to state to if that is later than the current state.
func (s *Session) advance(to State) bool {
	for {
		cur := s.state.Load()
		if State(cur) >= to {
			return false
		}
		if s.state.CompareAndSwap(cur, int32(to)) {
			s.stateAt.Store(s.env.Now())
			return true
		}
	}
}

// Upgraded records the authenticated identity and enters the
// registering state. Call it from Handler.Handshake only.
func (s *Session) Upgraded(uid, device string) {
	s.ident, s.sep = uid+"\x00"+device, uint8(len(uid))
	s.advance(StateRegistering)
}

// UseMsgpack makes the session speak MessagePack in binary frames (the
// client chose protocol.SubprotocolMsgpack): it takes binary messages
// only, and every JSON text frame queued to it is sent as its MessagePack
// binary form. Call it from Handler.Handshake only, before the session is
// published.
func (s *Session) UseMsgpack() { s.setFlag(flagBinary) }

// Binary reports whether the session speaks MessagePack (UseMsgpack).
func (s *Session) Binary() bool { return s.flags.Load()&flagBinary != 0 }

// MarkRegistered records that logic accepted the route.
func (s *Session) MarkRegistered() { s.setFlag(flagRegistered) }

// ClaimDisconnect reports true exactly once, to whichever of the close
// path and a late registration first finds that the route needs a
// Disconnect.
func (s *Session) ClaimDisconnect() bool { return s.setFlag(flagDiscQueued) }

// Open queues hello (already encoded) and makes the session routable, in
// one step under the write lock: a push that sees the session routable is
// queued behind hello, and the client never sees hello before pushes can
// reach it. It reports false if the session is no longer registering.
func (s *Session) Open(hello []byte) bool {
	hello, err := s.wire(hello)
	if err != nil {
		s.Kill()
		return false
	}
	s.wmu.Lock()
	if s.closeAfter || !s.advanceFrom(StateRegistering, StateOpen) {
		s.wmu.Unlock()
		return false
	}
	s.push(hello)
	sched := !s.scheduled
	s.scheduled = true
	s.wmu.Unlock()
	if sched && !s.env.Writers.Submit(s) {
		s.Kill()
		return false
	}
	return true
}

func (s *Session) advanceFrom(from, to State) bool {
	if s.state.CompareAndSwap(int32(from), int32(to)) {
		s.stateAt.Store(s.env.Now())
		return true
	}
	return false
}

// Reject queues an HTTP error response and closes after it is sent.
func (s *Session) Reject(resp []byte) {
	s.finish(resp, StateClosing)
}

// CloseWith starts the close handshake: it queues a close frame with code
// and reason and closes the connection once it is flushed. Later frames
// are dropped.
func (s *Session) CloseWith(code uint16, reason string) {
	s.finish(closeFrame(code, reason), StateClosing)
}

func (s *Session) finish(last []byte, st State) {
	if !s.advance(st) {
		return
	}
	s.wmu.Lock()
	if s.closeAfter {
		s.wmu.Unlock()
		return
	}
	s.push(last)
	s.closeAfter = true
	sched := !s.scheduled
	s.scheduled = true
	s.wmu.Unlock()
	if sched && !s.env.Writers.Submit(s) {
		s.Kill()
	}
}

// Kill closes the connection at once, without a close frame. Writes
// stop first (under ioMu), so none touches the socket or netpoll's output
// buffer once the connection starts closing; only the first Kill (or
// netpoll's own close, see OnClosed) closes it.
func (s *Session) Kill() {
	s.advance(StateClosed)
	s.ioMu.Lock()
	first := s.wbits&ioClosed == 0
	s.wbits |= ioClosed
	s.ioMu.Unlock()
	if first {
		_ = s.conn.Close()
	}
}

// OnClosed must be registered as the connection's close callback. It runs
// once, after netpoll has stopped calling OnRequest for the connection.
func (s *Session) OnClosed(netpoll.Connection) error {
	if !s.setFlag(flagFinished) {
		return nil
	}
	s.advance(StateClosed)
	// netpoll runs this callback before its own, which closes the socket
	// and frees the output buffer: a writer holding ioMu finishes first,
	// and none starts after.
	s.ioMu.Lock()
	s.wbits |= ioClosed
	s.ioMu.Unlock()
	s.wmu.Lock()
	s.wq, s.wbytes, s.closeAfter = nil, 0, true
	s.wmu.Unlock()
	s.dec.Reset()
	if s.msg != nil {
		wsframe.PutBuf(s.msg)
		s.msg = nil
	}
	s.head.Reset()
	s.env.Handler.Closed(s)
	return nil
}

// AllowTyping reports whether a typing indicator may pass: at most one
// per every (under 49 days). Only the OnRequest goroutine calls it. The
// time is kept in 32 bits of milliseconds, which wrap every 49.7 days; a
// wrap can at worst drop one indicator that should have passed.
func (s *Session) AllowTyping(every time.Duration) bool {
	now := uint32(s.env.Now() / int64(time.Millisecond))
	if s.typingAt != 0 && now-s.typingAt < uint32(every.Milliseconds()) {
		return false
	}
	if now == 0 {
		now-- // 0 means "none yet": count from a millisecond earlier
	}
	s.typingAt = now
	return true
}

// Allow counts one client message against the per-connection rate limit
// of limit messages per second (a fixed one-second window) and reports
// whether it is within it; limit <= 0 means no limit. Only the OnRequest
// goroutine calls it. The window and the count are kept in 16 bits each:
// the count stops at 65535 (so a limit of 65535 or more never refuses),
// and a connection silent for a multiple of 65536 seconds to the second
// continues its old window's count, which at worst refuses part of one
// second's messages. A connection that passes FloodFactor times the limit
// in one window is closed with 1008: it is not a client that went a little
// too fast, and answering each of its frames with an error would cost the
// gateway as much as the flood itself.
func (s *Session) Allow(limit int) bool {
	if limit <= 0 {
		return true
	}
	win := uint16(s.env.Now() / int64(time.Second))
	if win != s.rateWin {
		s.rateWin, s.rateN = win, 0
	}
	if s.rateN < math.MaxUint16 {
		s.rateN++
	}
	if int(s.rateN) > max(FloodFactor*limit, limit+floodMargin) && s.State() != StateClosing {
		s.env.Obs.Flooded()
		s.CloseWith(uint16(ws.StatusPolicyViolation), "too many frames")
	}
	return int(s.rateN) <= limit
}

// FloodFactor is how many times the rate limit a connection may send in
// one second before it is closed (see Allow); with a small limit, it is
// closed only floodMargin frames past it.
const (
	FloodFactor = 4
	floodMargin = 64
)
