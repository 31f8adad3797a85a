// Package routereg tells logic which connections this gateway holds, so
// logic can route pushes here.
//
// New connections are queued and sent in batched Connect calls (one call per
// few milliseconds or per BatchMax connections); when a batch succeeds each
// connection is told (Target.Registered), and only then does the gateway
// send hello and make it routable; a connection the login policy refused in
// favour of a later one of the same batch is told that instead
// (Target.Refused). A failed batch is retried with
// exponential backoff, minus connections that closed meanwhile, so a retry
// never recreates the route of a connection already disconnected. Closed
// connections are batched into Disconnect calls the same way. Every Refresh
// interval all live connections are sent again in Connect batches: routes
// live in Redis with a TTL and can be lost, and this rebuilds them.
//
// Concurrency: Add and Remove are safe for concurrent use and never block
// on the network; one goroutine (Run) makes every call, so a connection's
// Connect is always sent before its Disconnect.
package routereg

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
)

// Logic is the part of the logic service the registrar calls.
type Logic interface {
	Connect(ctx context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error)
	Disconnect(ctx context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error)
}

// Target is a connection waiting to be registered.
type Target interface {
	Info() *logic.ConnInfo
	// Alive reports whether the connection is still open.
	Alive() bool
	// Registered is called once logic accepted the route.
	Registered()
	// Refused is called instead when logic's login policy refused the
	// connection because a later one of the same Connect call took its
	// place: reason ("replaced", "same_device") and the device id of that
	// connection are what its kick frame says. This call stored no route
	// for it, but an earlier attempt of a retried batch may have (its
	// answer lost): the target should be disconnected all the same.
	Refused(reason, device string)
}

// Observer receives counts for metrics; call is "connect", "disconnect"
// or "refresh".
type Observer interface {
	Batch(call string, ok bool)
}

// Config configures a Registrar.
type Config struct {
	GatewayID string
	// FlushDelay is how long a new connection waits for others to share
	// its Connect call. Default 5 ms.
	FlushDelay time.Duration
	// BatchMax is the most connections per call. Default 500.
	BatchMax int
	// Refresh is the interval of the full re-registration; 0 disables it.
	Refresh time.Duration
	// CallTimeout bounds one call. Default 5 s.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound retry delays. Defaults 100 ms, 5 s.
	BackoffMin, BackoffMax time.Duration
	// DisconnectAttempts is how often a failed Disconnect batch is tried
	// before it is dropped (the routes then expire by TTL). Default 5.
	DisconnectAttempts int
}

func (c *Config) defaults() {
	if c.FlushDelay <= 0 {
		c.FlushDelay = 5 * time.Millisecond
	}
	if c.BatchMax <= 0 {
		c.BatchMax = 500
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(5*time.Second, c.BackoffMin)
	}
	if c.DisconnectAttempts <= 0 {
		c.DisconnectAttempts = 5
	}
}

// Registrar batches route registration.
type Registrar struct {
	cfg   Config
	logic Logic
	list  func() []*logic.ConnInfo
	obs   Observer
	log   *slog.Logger

	mu       sync.Mutex
	connects []Target
	discs    []*logic.ConnInfo
	kick     chan struct{}
	done     chan struct{}

	// Loop state, only touched by Run.
	connBackoff time.Duration
	connRetryAt time.Time
	discAttempt int
	discRetryAt time.Time
}

// New returns a Registrar. list returns the routes of every live, routable
// connection, for the periodic refresh.
func New(cfg Config, l Logic, list func() []*logic.ConnInfo, obs Observer, log *slog.Logger) (*Registrar, error) {
	if cfg.GatewayID == "" {
		return nil, errors.New("routereg: empty gateway id")
	}
	if l == nil {
		return nil, errors.New("routereg: no logic client")
	}
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	return &Registrar{cfg: cfg, logic: l, list: list, obs: obs, log: log,
		kick: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// Add queues t for a Connect call.
func (r *Registrar) Add(t Target) {
	r.mu.Lock()
	r.connects = append(r.connects, t)
	n := len(r.connects)
	r.mu.Unlock()
	if n == 1 || n >= r.cfg.BatchMax {
		r.wake()
	}
}

// Remove queues a Disconnect for a connection that was registered.
func (r *Registrar) Remove(info *logic.ConnInfo) {
	r.mu.Lock()
	r.discs = append(r.discs, info)
	n := len(r.discs)
	r.mu.Unlock()
	if n == 1 || n >= r.cfg.BatchMax {
		r.wake()
	}
}

func (r *Registrar) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run makes the calls until ctx ends, then sends the Disconnects still
// queued (bounded by CallTimeout) and returns.
func (r *Registrar) Run(ctx context.Context) {
	defer close(r.done)
	var refresh <-chan time.Time
	if r.cfg.Refresh > 0 && r.list != nil {
		t := time.NewTicker(r.cfg.Refresh)
		defer t.Stop()
		refresh = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			r.finalDisconnects()
			return
		case <-refresh:
			r.refresh(ctx)
		case <-retry.C:
		case <-r.kick:
			// Let more connections join the batch.
			select {
			case <-time.After(r.cfg.FlushDelay):
			case <-ctx.Done():
				r.finalDisconnects()
				return
			}
		}
		if wait := r.flush(ctx); wait > 0 {
			retry.Reset(wait)
		}
	}
}

// Done is closed when Run has returned.
func (r *Registrar) Done() <-chan struct{} { return r.done }

// flush sends what is queued and due; it returns how long to wait before
// retrying failed work (0: nothing to retry).
func (r *Registrar) flush(ctx context.Context) time.Duration {
	now := time.Now()
	var wait time.Duration
	if now.Before(r.connRetryAt) {
		wait = r.connRetryAt.Sub(now)
	} else {
		wait = r.flushConnects(ctx)
	}
	if now.Before(r.discRetryAt) {
		if d := r.discRetryAt.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	} else if d := r.flushDisconnects(ctx); d > 0 && (wait == 0 || d < wait) {
		wait = d
	}
	return wait
}

func (r *Registrar) flushConnects(ctx context.Context) time.Duration {
	for {
		r.mu.Lock()
		pending := r.connects
		r.connects = nil
		r.mu.Unlock()
		if len(pending) == 0 {
			return 0
		}
		// Drop connections that closed while waiting.
		live := pending[:0]
		for _, t := range pending {
			if t.Alive() {
				live = append(live, t)
			}
		}
		for start := 0; start < len(live); start += r.cfg.BatchMax {
			batch := live[start:min(start+r.cfg.BatchMax, len(live))]
			infos := make([]*logic.ConnInfo, len(batch))
			for i, t := range batch {
				infos[i] = t.Info()
			}
			refused, err := r.call(ctx, "connect", infos)
			if err != nil {
				// Put the rest back in front of newer arrivals and back off.
				r.mu.Lock()
				r.connects = append(append([]Target(nil), live[start:]...), r.connects...)
				r.mu.Unlock()
				r.connBackoff = nextBackoff(r.connBackoff, r.cfg)
				r.connRetryAt = time.Now().Add(r.connBackoff)
				r.log.Warn("logic Connect failed; will retry", "conns", len(live)-start, "retry_in", r.connBackoff, "err", err)
				return r.connBackoff
			}
			r.connBackoff = 0
			for i, t := range batch {
				if rc := refused[infos[i].ConnId]; rc != nil {
					t.Refused(rc.Reason, rc.Device)
				} else {
					t.Registered()
				}
			}
		}
	}
}

func (r *Registrar) flushDisconnects(ctx context.Context) time.Duration {
	r.mu.Lock()
	pending := r.discs
	r.discs = nil
	r.mu.Unlock()
	for start := 0; start < len(pending); start += r.cfg.BatchMax {
		batch := pending[start:min(start+r.cfg.BatchMax, len(pending))]
		if _, err := r.call(ctx, "disconnect", batch); err != nil {
			r.discAttempt++
			if r.discAttempt >= r.cfg.DisconnectAttempts {
				r.log.Warn("logic Disconnect failed; dropping, routes will expire", "conns", len(pending)-start, "err", err)
				r.discAttempt = 0
				continue
			}
			r.mu.Lock()
			r.discs = append(append([]*logic.ConnInfo(nil), pending[start:]...), r.discs...)
			r.mu.Unlock()
			d := nextBackoff(0, r.cfg) << min(r.discAttempt, 6)
			d = min(d, r.cfg.BackoffMax)
			r.discRetryAt = time.Now().Add(d)
			return d
		}
		r.discAttempt = 0
	}
	return 0
}

func (r *Registrar) refresh(ctx context.Context) {
	infos := r.list()
	for start := 0; start < len(infos); start += r.cfg.BatchMax {
		batch := infos[start:min(start+r.cfg.BatchMax, len(infos))]
		if _, err := r.call(ctx, "refresh", batch); err != nil {
			r.log.Warn("route refresh failed; next refresh retries", "conns", len(infos)-start, "err", err)
			return
		}
	}
}

// call makes one call; for a connect it returns the connections the login
// policy refused, by connection id.
func (r *Registrar) call(ctx context.Context, kind string, infos []*logic.ConnInfo) (map[int64]*logic.RefusedConn, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	var (
		refused map[int64]*logic.RefusedConn
		err     error
	)
	if kind == "disconnect" {
		_, err = r.logic.Disconnect(cctx, &logic.DisconnectReq{GatewayId: r.cfg.GatewayID, Conns: infos})
	} else {
		var resp *logic.ConnectResp
		resp, err = r.logic.Connect(cctx, &logic.ConnectReq{GatewayId: r.cfg.GatewayID, Conns: infos, Refresh: kind == "refresh", ClosesRefused: true})
		if err == nil && resp != nil && len(resp.Refused) > 0 {
			refused = make(map[int64]*logic.RefusedConn, len(resp.Refused))
			for _, rc := range resp.Refused {
				if rc != nil {
					refused[rc.ConnId] = rc
				}
			}
		}
	}
	if r.obs != nil {
		r.obs.Batch(kind, err == nil)
	}
	return refused, err
}

// finalDisconnects sends the queued Disconnects once at shutdown.
func (r *Registrar) finalDisconnects() {
	r.mu.Lock()
	pending := r.discs
	r.discs = nil
	r.mu.Unlock()
	ctx := context.Background()
	for start := 0; start < len(pending); start += r.cfg.BatchMax {
		batch := pending[start:min(start+r.cfg.BatchMax, len(pending))]
		if _, err := r.call(ctx, "disconnect", batch); err != nil {
			r.log.Warn("logic Disconnect at shutdown failed; routes will expire", "conns", len(pending)-start, "err", err)
			return
		}
	}
}

func nextBackoff(cur time.Duration, cfg Config) time.Duration {
	if cur <= 0 {
		return cfg.BackoffMin
	}
	return min(2*cur, cfg.BackoffMax)
}
