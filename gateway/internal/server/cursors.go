package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochat-im/gochat/gateway/internal/metrics"
	"github.com/gochat-im/gochat/gateway/internal/session"
	"github.com/gochat-im/gochat/gateway/internal/workpool"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// cursorBatcher answers JSON pings with the user's inbox cursor
// (docs/PROTOCOL.md, delivery rule 6). Every client pings once per
// heartbeat, so a gateway with 100,000 connections and a 30 s heartbeat
// sees over 3,000 pings a second: one logic call each would be the
// gateway's busiest RPC. Instead the pings that arrive within a few
// milliseconds of each other (at most a full batch) share one
// logic.Cursors call, and each pong is answered once it returns.
//
// A ping costs one small entry in the pending batch, nothing per
// connection. One timer serves the whole gateway. The logic call runs on
// the server's RPC worker pool, never on netpoll's goroutines: add only
// appends under a mutex and, for a full batch, submits it. A pong is never
// withheld because of logic: a failed or refused call, or a user missing
// from the reply, gets its pong without a cursor.
//
// Concurrency: add may be called from any goroutine; close once, at
// shutdown.
type cursorBatcher struct {
	logic   Logic
	pool    *workpool.Pool
	ctx     context.Context // cancelled when the server stops
	timeout time.Duration   // for one Cursors call
	delay   time.Duration   // how long the first ping of a batch waits for others
	max     int             // pings per batch
	reply   func(sess *session.Session, v any)
	m       *metrics.Metrics
	log     *slog.Logger

	lastWarn atomic.Int64 // unix nanos of the last warning about a failed call

	mu      sync.Mutex
	pending []pendingPing
	timer   *time.Timer // fires delay after the first ping of a batch
	armed   bool        // timer is set for the current batch
	closed  bool
}

// pendingPing is a ping waiting for its pong.
type pendingPing struct {
	sess *session.Session
	rid  string
}

// add queues a pong for sess. The batch goes to logic when it is full or
// when the timer fires, whichever comes first.
func (b *cursorBatcher) add(sess *session.Session, rid string) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.answer([]pendingPing{{sess: sess, rid: rid}}, nil)
		return
	}
	b.pending = append(b.pending, pendingPing{sess: sess, rid: rid})
	if len(b.pending) >= b.max {
		batch := b.take()
		b.mu.Unlock()
		b.dispatch(batch)
		return
	}
	if !b.armed {
		b.armed = true
		if b.timer == nil {
			b.timer = time.AfterFunc(b.delay, b.fire)
		} else {
			b.timer.Reset(b.delay)
		}
	}
	b.mu.Unlock()
}

// take removes the pending batch; b.mu is held. A timer that fires anyway
// (it was already running) finds a newer batch or none, and at worst sends
// that one a little early.
func (b *cursorBatcher) take() []pendingPing {
	batch := b.pending
	b.pending = nil
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	return batch
}

// fire runs on the timer's goroutine.
func (b *cursorBatcher) fire() {
	b.mu.Lock()
	b.armed = false
	batch := b.take()
	b.mu.Unlock()
	if len(batch) > 0 {
		b.dispatch(batch)
	}
}

// dispatch reads the batch's cursors on the worker pool and answers it.
func (b *cursorBatcher) dispatch(batch []pendingPing) {
	ok := b.pool.Submit(workpool.Func(func() {
		ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
		defer cancel()
		b.answer(batch, b.read(ctx, batch))
	}))
	if !ok {
		b.m.RPCRejected.Inc()
		b.answer(batch, nil)
	}
}

// read asks logic for the cursors of the batch's users, each once (a
// user's devices often ping together). It returns nil if the call fails.
func (b *cursorBatcher) read(ctx context.Context, batch []pendingPing) map[string]int64 {
	seen := make(map[string]struct{}, len(batch))
	uids := make([]string, 0, len(batch))
	for _, p := range batch {
		uid := p.sess.UID()
		if _, dup := seen[uid]; !dup {
			seen[uid] = struct{}{}
			uids = append(uids, uid)
		}
	}
	resp, err := b.logic.Cursors(ctx, &logic.CursorsReq{Uids: uids})
	if err != nil {
		b.callFailed(err)
		return nil
	}
	return resp.Cursors
}

// answer sends each pong, with its user's cursor when known.
func (b *cursorBatcher) answer(batch []pendingPing, cursors map[string]int64) {
	ts := time.Now().UnixMilli()
	for _, p := range batch {
		b.reply(p.sess, protocol.Pong{Type: protocol.TypePong, RID: p.rid, TS: ts, Cursor: cursors[p.sess.UID()]})
	}
}

// close answers what is pending without cursors; later pings are answered
// at once, without cursors. The server calls it while shutting down.
func (b *cursorBatcher) close() {
	b.mu.Lock()
	b.closed = true
	batch := b.take()
	b.mu.Unlock()
	b.answer(batch, nil)
}

// warnEvery spaces out warnings about failed Cursors calls: pings never
// stop, so an outage of logic would otherwise log one line per batch.
const warnEvery = 10 * time.Second

// callFailed counts a failed Cursors call and logs it: an outage as a
// warning at most every warnEvery, a refusal (a store that does not keep
// cursors, say) at debug level only. Either way the pongs go out without
// cursors.
func (b *cursorBatcher) callFailed(err error) {
	b.m.RPCErrors.WithLabelValues("cursors").Inc()
	code, _ := errcode.Of(err)
	now := time.Now().UnixNano()
	if last := b.lastWarn.Load(); code >= 5000 && now-last >= int64(warnEvery) && b.lastWarn.CompareAndSwap(last, now) {
		b.log.Warn("logic call failed; pongs go out without cursors", "method", "cursors", "err", err)
		return
	}
	b.log.Debug("logic call failed", "method", "cursors", "code", int32(code), "err", err)
}
