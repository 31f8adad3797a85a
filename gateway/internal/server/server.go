// Package server runs the gateway's WebSocket server on a netpoll event
// loop and ties the parts together: sessions (internal/session), the
// sharded connection table and its sweeper (internal/conntable), the
// handshake (internal/upgrade), route registration with logic
// (internal/routereg), client operations, and delivery of downstream
// records (internal/downstream).
//
// There is no goroutine and no timer per connection. netpoll runs OnRequest
// on its pool only while a connection has input; writes go through each
// session's bounded queue to a shared writer pool that grows only around
// clients that block it; handshake, idle and close timeouts come from one
// sweeper goroutine walking the table's shards; sync and conversations
// calls to logic (and the batched cursor reads of pings) run on a bounded
// worker pool, never on netpoll's goroutines. Memory per idle connection is kept to about 3 KiB
// (docs/TUNING.md): small netpoll buffers and a trimmed write scratch
// (netpoll.go), the 101 response written straight to the socket, and a
// small session.
//
// Concurrency: a Server is safe for concurrent use once started. Start and
// Shutdown are each called once.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/conntable"
	"github.com/gochat-im/gochat/gateway/internal/downstream"
	"github.com/gochat-im/gochat/gateway/internal/metrics"
	"github.com/gochat-im/gochat/gateway/internal/routereg"
	"github.com/gochat-im/gochat/gateway/internal/session"
	"github.com/gochat-im/gochat/gateway/internal/upgrade"
	"github.com/gochat-im/gochat/gateway/internal/upstream"
	"github.com/gochat-im/gochat/gateway/internal/workpool"
	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
)

// Logic is the part of the logic service the gateway calls. The Kitex
// client is adapted to it in internal/logicrpc; tests fake it.
type Logic interface {
	routereg.Logic
	Sync(ctx context.Context, req *logic.SyncReq) (*logic.SyncResp, error)
	Conversations(ctx context.Context, req *logic.ConversationsReq) (*logic.ConversationsResp, error)
	// ClientCall answers a client frame logic handles (group operations).
	ClientCall(ctx context.Context, req *logic.ClientCallReq) (*logic.ClientCallResp, error)
	// Cursors returns users' inbox cursors, for pongs.
	Cursors(ctx context.Context, req *logic.CursorsReq) (*logic.CursorsResp, error)
}

// Deps are the server's collaborators.
type Deps struct {
	Logic    Logic
	Up       upstream.Sink
	Verifier upgrade.Verifier
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// Now is the clock for timeouts (unix nanos); default time.Now.
	Now func() int64
}

// Server is the gateway's WebSocket server.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics.Metrics

	table   *conntable.Table[*session.Session]
	sweeper *conntable.Sweeper[*session.Session]
	up      *upgrade.Upgrader
	env     *session.Env
	writers *workpool.Pool
	rpc     *workpool.Pool
	reg     *routereg.Registrar
	fan     *downstream.Fanout
	cursors *cursorBatcher

	nextID   atomic.Int64
	draining atomic.Bool
	trimmer  scratchTrimmer

	ln     netpoll.Listener
	loop   netpoll.EventLoop
	ctx    context.Context // cancelled at the end of Shutdown
	cancel context.CancelFunc
	regCtl context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a server; Start begins serving.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logic == nil || deps.Up == nil || deps.Verifier == nil {
		return nil, errors.New("server: Logic, Up and Verifier are required")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.New(nil)
	}
	if deps.Now == nil {
		deps.Now = func() int64 { return time.Now().UnixNano() }
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log.With("gateway", cfg.ID), m: deps.Metrics}
	var err error
	if s.table, err = conntable.New[*session.Session](cfg.Shards); err != nil {
		return nil, err
	}
	if s.up, err = upgrade.New(upgrade.Config{Path: cfg.Path, MaxHead: cfg.MaxHead, Verifier: deps.Verifier}); err != nil {
		return nil, err
	}
	s.writers = workpool.NewPool(workpool.Config{Core: min(4*runtime.GOMAXPROCS(0), cfg.Writers), Max: cfg.Writers})
	s.rpc = workpool.New(cfg.Workers, cfg.RPCQueue)
	s.env = &session.Env{
		Handler:         s,
		Obs:             s.m,
		Writers:         s.writers,
		MaxFrame:        int64(cfg.MaxFrame),
		MaxHead:         cfg.MaxHead,
		WriteQueue:      cfg.WriteQueue,
		WriteQueueBytes: cfg.WriteQueueBytes,
		SlowClose:       wsframe.CloseFrame(ws.StatusPolicyViolation, "client too slow"),
		FrameRate:       cfg.MsgRate,
		MaxBacklog:      max(maxBacklog, 4*cfg.MaxFrame),
		Now:             deps.Now,
		Log:             s.log,
	}
	s.reg, err = routereg.New(routereg.Config{
		GatewayID:  cfg.ID,
		FlushDelay: cfg.RegisterFlush,
		BatchMax:   cfg.RegisterBatch,
		Refresh:    cfg.RouteRefresh,
	}, deps.Logic, s.routes, s.m, s.log)
	if err != nil {
		return nil, err
	}
	s.sweeper = conntable.NewSweeper(s.table, conntable.SweepConfig[*session.Session]{
		Interval:     cfg.SweepInterval,
		ConnInterval: cfg.IdleSweep,
		Now:          func() time.Time { return time.Unix(0, deps.Now()) },
		Due:          s.due,
		Expire:       s.expire,
	})
	s.fan = downstream.NewFanout(lookup{s.table}, s.m)
	// Conn ids start at the current time in microseconds, so a restarted
	// gateway does not hand out ids its previous run used recently (unless
	// it accepted over a million connections a second), and stay below
	// 2^53 so JavaScript clients read them exactly.
	s.nextID.Store(time.Now().UnixMicro())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cursors = &cursorBatcher{logic: deps.Logic, pool: s.rpc, ctx: s.ctx, timeout: cfg.RPCTimeout,
		delay: cfg.CursorDelay, max: cfg.CursorBatch, reply: s.reply, m: s.m, log: s.log}
	return s, nil
}

// Start listens on cfg.Listen and serves in the background.
func (s *Server) Start() error {
	ln, err := netpoll.CreateListener("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	loop, err := netpoll.NewEventLoop(s.onRequest,
		netpoll.WithOnPrepare(s.onPrepare),
		// A flush that cannot finish in this time means the client is not
		// reading: the writer gives up and the connection is closed.
		netpoll.WithWriteTimeout(s.cfg.WriteTimeout),
	)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("netpoll event loop: %w", err)
	}
	s.ln, s.loop = ln, loop
	if err := s.m.WatchTable(s.table); err != nil {
		s.log.Warn("connection table metrics", "err", err)
	}
	if err := s.m.WatchWriters(s.writers.Workers); err != nil {
		s.log.Warn("writer metrics", "err", err)
	}
	regCtx, regCancel := context.WithCancel(context.Background())
	s.regCtl = regCancel
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := loop.Serve(ln); err != nil && s.ctx.Err() == nil && !s.draining.Load() {
			s.log.Error("netpoll server stopped", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.sweeper.Run(s.ctx) }()
	go func() { defer s.wg.Done(); s.reg.Run(regCtx) }()
	s.log.Info("gateway listening", "addr", ln.Addr().String(), "path", s.cfg.Path, "shards", s.cfg.Shards)
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Fanout delivers downstream records to this server's connections.
func (s *Server) Fanout() *downstream.Fanout { return s.fan }

// Conns returns the number of authenticated connections.
func (s *Server) Conns() int { return s.table.Len() }

func (s *Server) onPrepare(conn netpoll.Connection) context.Context {
	if s.draining.Load() {
		_ = conn.Close()
		return context.Background()
	}
	s.trimmer.trim(conn)
	sess := session.New(s.env, conn, s.nextID.Add(1))
	_ = conn.AddCloseCallback(sess.OnClosed)
	s.table.AddPending(sess)
	// The session is the connection's context: no allocation for a context
	// value, and OnRequest finds it with a type assertion.
	return sess
}

func (s *Server) onRequest(ctx context.Context, conn netpoll.Connection) error {
	sess, ok := session.FromContext(ctx)
	if !ok {
		r := conn.Reader()
		_ = r.Skip(r.Len())
		_ = r.Release()
		return conn.Close()
	}
	return sess.OnReadable()
}

// lookup finds push targets in the connection table for the fan-out.
type lookup struct {
	t *conntable.Table[*session.Session]
}

func (l lookup) Push(uid string, id int64) (downstream.Conn, bool) {
	sess, ok := l.t.Push(uid, id)
	if !ok {
		return nil, false
	}
	return sess, true
}

func (l lookup) PushBytes(uid []byte, id int64) (downstream.Conn, bool) {
	sess, ok := l.t.PushBytes(uid, id)
	if !ok {
		return nil, false
	}
	return sess, true
}

// routes lists the routes of every open connection, for the refresh.
func (s *Server) routes() []*logic.ConnInfo {
	var out []*logic.ConnInfo
	for i := 0; i < s.table.Shards(); i++ {
		s.table.Range(i, func(sess *session.Session) bool {
			if sess.Routable() {
				out = append(out, &logic.ConnInfo{Uid: sess.UID(), Device: sess.Device(), ConnId: sess.ConnID()})
			}
			return true
		})
	}
	return out
}

// Shutdown stops accepting connections, closes every connection with 1001
// (going away), waits for them to go (until ctx ends, then drops the rest),
// sends the last Disconnect batches and stops the event loop.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.draining.CompareAndSwap(false, true) {
		return errors.New("server: already shut down")
	}
	for _, sess := range s.table.All() {
		if sess.State() == session.StateHandshake {
			s.m.Handshakes.WithLabelValues(upgrade.ReasonShutdown).Inc()
			sess.Kill()
			continue
		}
		sess.CloseWith(1001, "server shutting down")
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.table.Len()+s.table.PendingLen() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	for _, sess := range s.table.All() {
		sess.Kill()
	}
	// Every close has queued its Disconnect by now; the registrar sends
	// them as it stops.
	if s.regCtl != nil {
		s.regCtl()
		select {
		case <-s.reg.Done():
		case <-ctx.Done():
		}
	}
	var err error
	if s.loop != nil {
		if e := s.loop.Shutdown(ctx); e != nil && !errors.Is(e, context.DeadlineExceeded) {
			err = e
		}
	}
	s.cursors.close()
	s.cancel()
	s.rpc.Close()
	s.writers.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	return err
}

// maxBacklog is the least input a connection may have waiting to be
// handled before it is closed (session.Env.MaxBacklog): far more than a
// client that waits for its acks ever has in flight.
const maxBacklog = 8 << 20
