// Package handler is the dataproxy's Kitex handler: it implements the
// dataproxy.DataProxy API over a store.Store (messages, conversations,
// users, groups, cursors), a route table in Redis (users' routes and
// groups' route sets) and the inbox cursors cached in Redis.
//
// Each method is thin: check the request's size and shape, call the store,
// then bring the Redis caches up to date with what was committed (a failed
// cache update never fails the call: its keys go to the repair queue, see
// package repair), convert the answer. Errors reach the caller as Kitex
// business status errors with pkg/errcode codes: a bad request is
// BadRequest/BadField, a call carrying too many bytes TooLarge (an
// oversized message inside a call gets TooLarge in its own result), an
// unknown conversation or group ConvNotFound, a refused group change
// Forbidden or UserNotFound, and any failure of the database or Redis
// Unavailable (retry later; an append retried with the same client message
// ids never stores a message twice). A handler never panics on input.
//
// Concurrency: a Handler is safe for concurrent use; Kitex calls it from many
// goroutines. It holds no state besides its dependencies and metrics.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/dataproxy/internal/inbox"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

var _ dataproxy.DataProxy = (*Handler)(nil)

// RouteTable is the part of routes.Table the handler uses.
type RouteTable interface {
	SetRoutes(ctx context.Context, rs []routes.Route, ttl time.Duration) error
	DelRoutes(ctx context.Context, rs []routes.Route) (int, error)
	GetRoutes(ctx context.Context, uids []string) ([]routes.Route, error)
	GetGroupRoutes(ctx context.Context, group string) ([]routes.Route, error)
	JoinGroup(ctx context.Context, group string, uids []string) error
	LeaveGroup(ctx context.Context, group string, uids []string) error
	DropGroup(ctx context.Context, group string) error
	ForgetUserGroups(ctx context.Context, uids []string) error
	RepairGroup(group string)
}

// Inbox is the part of inbox.Inbox the handler uses.
type Inbox interface {
	Queue(seqs map[string]int64, pairs []inbox.Pair) (wait func(ctx context.Context) error)
	Forget(ctx context.Context, uids []string) error
	Cursors(ctx context.Context, uids []string) (map[string]int64, error)
}

// Defaults and limits of a call.
const (
	// DefaultMaxBatch is the most items, users, uids or routes one call
	// may carry, as the IDL promises callers.
	DefaultMaxBatch = dataproxy.MAX_BATCH
	// DefaultMaxRequestBytes bounds the bytes of the messages of one
	// AppendMessages call.
	DefaultMaxRequestBytes = 64 << 20
	// MaxRouteTTL is the longest ttl_seconds a SetRoutes may ask for.
	MaxRouteTTL = 24 * time.Hour
)

// Config configures a Handler.
type Config struct {
	// MaxBatch is the most items, users, uids or routes one call may carry;
	// 0 means DefaultMaxBatch.
	MaxBatch int
	// MaxRequestBytes bounds the summed size of the messages (ids, content
	// type and body) of one AppendMessages call; a larger call is refused
	// with TooLarge before it reaches the store. 0 means
	// DefaultMaxRequestBytes. Each body is limited by the store as well.
	MaxRequestBytes int
}

// Handler implements dataproxy.DataProxy.
type Handler struct {
	st       store.Store
	rt       RouteTable
	ib       Inbox
	max      int
	maxBytes int
	log      *slog.Logger
	m        *metrics
}

// New returns a Handler. Its metrics are registered on reg.
func New(cfg Config, st store.Store, rt RouteTable, ib Inbox, reg prometheus.Registerer, log *slog.Logger) (*Handler, error) {
	if st == nil || rt == nil || ib == nil {
		return nil, errors.New("handler: store, route table and inbox are required")
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxBatch < 0 || cfg.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("handler: max batch %d, max request bytes %d", cfg.MaxBatch, cfg.MaxRequestBytes)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Handler{st: st, rt: rt, ib: ib, max: cfg.MaxBatch, maxBytes: cfg.MaxRequestBytes, log: log, m: m}, nil
}

// fail turns a dependency's error into the error the caller sees: a coded
// error keeps its code, anything else is Unavailable.
func (h *Handler) fail(method string, err error) error {
	var e *errcode.Error
	if errors.As(err, &e) {
		return errcode.ToBiz(e)
	}
	h.log.Warn("dependency failed", "method", method, "err", err)
	return errcode.Biz(errcode.Unavailable, "%s: %v", method, err)
}

// AppendMessages implements dataproxy.DataProxy.
func (h *Handler) AppendMessages(ctx context.Context, req *dataproxy.AppendMessagesReq) (resp *dataproxy.AppendMessagesResp, err error) {
	defer h.m.observe("AppendMessages", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("items", len(req.Items)); err != nil {
		return nil, err
	}
	if n := requestBytes(req.Items); n > h.maxBytes {
		return nil, errcode.Biz(errcode.TooLarge, "the messages of this call hold %d bytes; the limit is %d", n, h.maxBytes)
	}
	// The routes are read while the items are stored; the answer waits for
	// both. A failed lookup does not fail the call (see routes_read), and
	// neither do more route uids than a call may carry: they are not read,
	// and the caller asks GetRoutes itself. The append, which only queues
	// the items for the committer and waits, gets the new goroutine; the
	// Redis round trip runs on this one, whose stack has grown for such
	// calls already.
	var (
		res      []store.AppendResult
		aerr     error
		routes   []*common.Route
		routesOK bool
	)
	appendBatch := func() { res, aerr = h.st.AppendMessages(ctx, appendItems(req.Items)) }
	if n := len(req.RouteUids); n == 0 || n > h.max {
		appendBatch()
	} else {
		var stored sync.WaitGroup
		stored.Go(appendBatch)
		var lerr error
		if routes, lerr = h.readRoutes(ctx, req.RouteUids); lerr != nil {
			h.log.Warn("AppendMessages: route lookup failed; the caller looks them up itself", "err", lerr)
		} else {
			routesOK = true
		}
		stored.Wait()
	}
	if aerr != nil {
		return nil, h.fail("AppendMessages", aerr)
	}
	h.m.countAppend(res)
	h.afterAppend(ctx, req.Items, res)
	return &dataproxy.AppendMessagesResp{Results: appendResults(res), Routes: routes, RoutesRead: routesOK}, nil
}

// afterAppend brings the inbox cursors up to date with a committed append:
// each conversation's highest seq, and the users of its one-to-one
// conversations. It runs even if the caller has gone (the commit stands).
//
// The answer does not wait for Redis: the update is queued (merged with
// the other appends' into one round trip) and written right after. This
// process's own cursor reads wait for what it has queued (inbox.Settle);
// another instance may meanwhile read a cursor a few milliseconds low,
// which a client's heartbeat check reads as nothing missed yet (an inbox
// cursor may be low, never high), and the next heartbeat sees it.
func (h *Handler) afterAppend(ctx context.Context, items []*dataproxy.AppendItem, res []store.AppendResult) {
	seqs := make(map[string]int64)
	var pairs []inbox.Pair
	for i, r := range res {
		it := items[i]
		if r.ErrorCode != 0 || it == nil {
			continue
		}
		if r.Seq > seqs[it.ConvId] {
			seqs[it.ConvId] = r.Seq
		}
		if a, b, ok := ids.ParseP2P(it.ConvId); ok {
			pairs = append(pairs, inbox.Pair{UID: a, Conv: it.ConvId}, inbox.Pair{UID: b, Conv: it.ConvId})
		}
	}
	if len(seqs) == 0 {
		return
	}
	wait := h.ib.Queue(seqs, pairs) // queued before the answer: a shutdown's Settle covers it
	go func() {
		ctx, cancel := detached(ctx, redisTimeout)
		defer cancel()
		if err := wait(ctx); errors.Is(err, inbox.ErrPending) {
			h.log.Warn("inbox cursor update late (Redis slow); still queued", "err", err)
		} else if err != nil {
			h.log.Warn("inbox cursors not updated; their keys are queued for deletion", "err", err)
		}
	}()
}

// detached is ctx without its cancellation, bounded by d: for the cache
// updates that follow a commit (redisTimeout, or more for long ones).
func detached(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// redisTimeout bounds the cache updates after a commit: while Redis does
// not answer, an append waits at most this long for it (then its keys go
// to the repair queue).
const redisTimeout = 2 * time.Second

// SyncMessages implements dataproxy.DataProxy.
func (h *Handler) SyncMessages(ctx context.Context, req *dataproxy.SyncMessagesReq) (resp *dataproxy.SyncMessagesResp, err error) {
	defer h.m.observe("SyncMessages", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	res, err := h.st.SyncMessages(ctx, req.ConvId, req.AfterSeq, int(req.Limit))
	if err != nil {
		return nil, h.fail("SyncMessages", err)
	}
	return &dataproxy.SyncMessagesResp{Messages: messages(res.Messages), HasMore: res.HasMore, LastSeq: res.LastSeq}, nil
}

// ListConversations implements dataproxy.DataProxy.
func (h *Handler) ListConversations(ctx context.Context, req *dataproxy.ListConversationsReq) (resp *dataproxy.ListConversationsResp, err error) {
	defer h.m.observe("ListConversations", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	res, err := h.st.ListConversations(ctx, req.Uid, int(req.Limit))
	if err != nil {
		return nil, h.fail("ListConversations", err)
	}
	return &dataproxy.ListConversationsResp{Items: conversations(res)}, nil
}

// UpsertUsers implements dataproxy.DataProxy.
func (h *Handler) UpsertUsers(ctx context.Context, req *dataproxy.UpsertUsersReq) (resp *dataproxy.UpsertUsersResp, err error) {
	defer h.m.observe("UpsertUsers", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("users", len(req.Users)); err != nil {
		return nil, err
	}
	n, err := h.st.UpsertUsers(ctx, usersIn(req.Users))
	if err != nil {
		return nil, h.fail("UpsertUsers", err)
	}
	return &dataproxy.UpsertUsersResp{Created: int32(n)}, nil
}

// GetUsers implements dataproxy.DataProxy.
func (h *Handler) GetUsers(ctx context.Context, req *dataproxy.GetUsersReq) (resp *dataproxy.GetUsersResp, err error) {
	defer h.m.observe("GetUsers", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("uids", len(req.Uids)); err != nil {
		return nil, err
	}
	res, err := h.st.GetUsers(ctx, req.Uids)
	if err != nil {
		return nil, h.fail("GetUsers", err)
	}
	return &dataproxy.GetUsersResp{Users: usersOut(res)}, nil
}

// SetRoutes implements dataproxy.DataProxy.
func (h *Handler) SetRoutes(ctx context.Context, req *dataproxy.SetRoutesReq) (resp *dataproxy.SetRoutesResp, err error) {
	defer h.m.observe("SetRoutes", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("routes", len(req.Routes)); err != nil {
		return nil, err
	}
	rs, err := routesIn(req.Routes)
	if err != nil {
		return nil, err
	}
	ttl, err := routeTTL(req.TtlSeconds)
	if err != nil {
		return nil, err
	}
	if err := h.rt.SetRoutes(ctx, rs, ttl); err != nil {
		return nil, h.fail("SetRoutes", err)
	}
	return &dataproxy.SetRoutesResp{}, nil
}

// DelRoutes implements dataproxy.DataProxy.
func (h *Handler) DelRoutes(ctx context.Context, req *dataproxy.DelRoutesReq) (resp *dataproxy.DelRoutesResp, err error) {
	defer h.m.observe("DelRoutes", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("routes", len(req.Routes)); err != nil {
		return nil, err
	}
	rs, err := routesIn(req.Routes)
	if err != nil {
		return nil, err
	}
	if _, err := h.rt.DelRoutes(ctx, rs); err != nil {
		return nil, h.fail("DelRoutes", err)
	}
	return &dataproxy.DelRoutesResp{}, nil
}

// GetRoutes implements dataproxy.DataProxy.
func (h *Handler) GetRoutes(ctx context.Context, req *dataproxy.GetRoutesReq) (resp *dataproxy.GetRoutesResp, err error) {
	defer h.m.observe("GetRoutes", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("uids", len(req.Uids)); err != nil {
		return nil, err
	}
	rs, err := h.readRoutes(ctx, req.Uids)
	if err != nil {
		return nil, h.fail("GetRoutes", err)
	}
	return &dataproxy.GetRoutesResp{Routes: rs}, nil
}

// readRoutes returns every route of the valid uids among uids.
func (h *Handler) readRoutes(ctx context.Context, uids []string) ([]*common.Route, error) {
	rs, err := h.rt.GetRoutes(ctx, validUIDs(uids))
	if err != nil {
		return nil, err
	}
	return routesOut(rs), nil
}

// checkCount rejects a request carrying too many entries.
func (h *Handler) checkCount(what string, n int) error {
	if n > h.max {
		return errcode.Biz(errcode.BadRequest, "%d %s in one call; the limit is %d", n, what, h.max)
	}
	return nil
}

func requestBytes(items []*dataproxy.AppendItem) int {
	n := 0
	for _, it := range items {
		if it != nil {
			n += len(it.ConvId) + len(it.Sender) + len(it.Recipient) + len(it.ClientMsgId) + len(it.ContentType) + len(it.Body)
		}
	}
	return n
}

func errNoRequest() error { return errcode.Biz(errcode.BadRequest, "no request") }
