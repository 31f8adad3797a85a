// Package handler is the dataproxy's Kitex handler: it implements the
// dataproxy.DataProxy API over a store.Store (messages, conversations,
// users) and a route table in Redis.
//
// Each method is thin: check the request's size and shape, call the store or
// the route table once, convert the answer. Errors reach the caller as Kitex
// business status errors with pkg/errcode codes: a bad request is
// BadRequest/BadField, a call carrying too many bytes TooLarge (an
// oversized message inside a call gets TooLarge in its own result), an
// unknown conversation ConvNotFound, and any failure of the database or
// Redis Unavailable (retry later; an append retried with the same client
// message ids never stores a message twice). A handler never panics on
// input.
//
// Concurrency: a Handler is safe for concurrent use; Kitex calls it from many
// goroutines. It holds no state besides its dependencies and metrics.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
)

var _ dataproxy.DataProxy = (*Handler)(nil)

// RouteTable is the part of routes.Table the handler uses.
type RouteTable interface {
	SetRoutes(ctx context.Context, rs []routes.Route, ttl time.Duration) error
	DelRoutes(ctx context.Context, rs []routes.Route) (int, error)
	GetRoutes(ctx context.Context, uids []string) ([]routes.Route, error)
}

// Defaults and limits of a call.
const (
	DefaultMaxBatch = 1000
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
	max      int
	maxBytes int
	log      *slog.Logger
	m        *metrics
}

// New returns a Handler. Its metrics are registered on reg.
func New(cfg Config, st store.Store, rt RouteTable, reg prometheus.Registerer, log *slog.Logger) (*Handler, error) {
	if st == nil || rt == nil {
		return nil, errors.New("handler: store and route table are required")
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
	return &Handler{st: st, rt: rt, max: cfg.MaxBatch, maxBytes: cfg.MaxRequestBytes, log: log, m: m}, nil
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
	res, err := h.appendMessages(ctx, req.Items)
	if err != nil {
		return nil, h.fail("AppendMessages", err)
	}
	h.m.countAppend(res)
	return &dataproxy.AppendMessagesResp{Results: appendResults(res)}, nil
}

// appendMessages stores the items, except recalls (recall_seq > 0), which
// this store does not implement yet: they are answered Unsupported item by
// item, never stored as plain messages.
func (h *Handler) appendMessages(ctx context.Context, in []*dataproxy.AppendItem) ([]store.AppendResult, error) {
	items := appendItems(in)
	keep := make([]int, 0, len(in))
	for i, it := range in {
		if it == nil || it.RecallSeq == 0 {
			keep = append(keep, i)
		}
	}
	if len(keep) == len(in) {
		return h.st.AppendMessages(ctx, items)
	}
	sub := make([]store.AppendItem, len(keep))
	for k, i := range keep {
		sub[k] = items[i]
	}
	got, err := h.st.AppendMessages(ctx, sub)
	if err != nil {
		return nil, err
	}
	res := make([]store.AppendResult, len(in))
	for i := range res {
		res[i] = store.AppendResult{ErrorCode: int32(errcode.Unsupported), ErrorMessage: "recall is not implemented by this dataproxy yet"}
	}
	for k, i := range keep {
		res[i] = got[k]
	}
	return res, nil
}

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
	rs, err := h.rt.GetRoutes(ctx, validUIDs(req.Uids))
	if err != nil {
		return nil, h.fail("GetRoutes", err)
	}
	return &dataproxy.GetRoutesResp{Routes: routesOut(rs)}, nil
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
