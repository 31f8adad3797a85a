// Package handler implements logic's Kitex API (idl/thrift/logic.thrift).
// Gateways call Connect, Disconnect, Sync and Conversations for the users
// they hold; app backends call IssueToken and CreateUsers with the admin
// secret. Each method validates its input, calls dataproxy and maps errors
// to the codes of package errcode. Handler is safe for concurrent use.
package handler

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"strings"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

var _ logic.Logic = (*Handler)(nil)

// Limits of one call.
const (
	maxBatch          = 1000
	defaultConvsLimit = 100
	maxConvsLimit     = 1000
)

// Config is what the handler needs to know.
type Config struct {
	AdminSecret string
	// RecallSecret, when set, is accepted by Recall as well as AdminSecret
	// (and by nothing else), for callers that only take messages down.
	RecallSecret string
	TokenSecret  []byte
	// TokenTTL is the default token lifetime (24 h when not positive);
	// MaxTokenTTL caps a requested one.
	TokenTTL    time.Duration
	MaxTokenTTL time.Duration
	// RouteTTL is how long a route lives in Redis unless refreshed: 0
	// means dataproxy's default, anything else is taken into
	// [MinRouteTTL, MaxRouteTTL], what dataproxy accepts.
	RouteTTL time.Duration
	// LoginPolicy limits concurrent logins per device kind.
	LoginPolicy LoginPolicy
	// MaxBody is the largest body Send accepts.
	MaxBody int
}

// Bounds of Config.RouteTTL: dataproxy takes whole seconds, at most a day
// (0 being its own default).
const (
	MinRouteTTL = time.Second
	MaxRouteTTL = 24 * time.Hour
)

// Handler serves the Logic service.
type Handler struct {
	cfg    Config
	dp     dpclient.Client
	users  *users.Cache
	router *routing.Router
	prod   Producer
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Handler. router and prod serve the login policy, which is
// not applied without them. Settings out of range are corrected (see
// Config); logic's main refuses them before.
func New(cfg Config, dp dpclient.Client, uc *users.Cache, router *routing.Router, prod Producer, log *slog.Logger) *Handler {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.RouteTTL != 0 {
		cfg.RouteTTL = min(max(cfg.RouteTTL, MinRouteTTL), MaxRouteTTL)
	}
	if cfg.MaxTokenTTL == 0 {
		cfg.MaxTokenTTL = 30 * 24 * time.Hour
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 4096
	}
	return &Handler{cfg: cfg, dp: dp, users: uc, router: router, prod: prod, log: log, now: time.Now}
}

// recaller accepts the admin secret or the recall secret.
func (h *Handler) recaller(secret string) error {
	if h.cfg.RecallSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(h.cfg.RecallSecret)) == 1 {
		return nil
	}
	return h.admin(secret)
}

func (h *Handler) admin(secret string) error {
	if h.cfg.AdminSecret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(h.cfg.AdminSecret)) != 1 {
		return errcode.Biz(errcode.Unauthorized, "bad admin secret")
	}
	return nil
}

// IssueToken signs a token for a user's device, creating the user unless
// told not to.
func (h *Handler) IssueToken(ctx context.Context, req *logic.IssueTokenReq) (*logic.IssueTokenResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	if !ids.ValidUID(req.Uid) {
		return nil, errcode.Biz(errcode.BadField, "invalid uid %q", req.Uid)
	}
	if !ids.ValidDevice(req.Device) {
		return nil, errcode.Biz(errcode.BadField, "invalid device %q", req.Device)
	}
	ttl := h.cfg.TokenTTL
	if req.TtlSeconds < 0 {
		return nil, errcode.Biz(errcode.BadField, "negative ttl")
	}
	if req.TtlSeconds > 0 {
		// Compared in seconds first: a huge ttl_seconds would overflow
		// the multiplication.
		ttl = h.cfg.MaxTokenTTL
		if req.TtlSeconds < int64(h.cfg.MaxTokenTTL/time.Second) {
			ttl = time.Duration(req.TtlSeconds) * time.Second
		}
	}
	if req.CreateUser {
		if _, err := h.dp.UpsertUsers(ctx, &dataproxy.UpsertUsersReq{Users: []*common.User{{Uid: req.Uid, CreatedAtMs: h.now().UnixMilli()}}}); err != nil {
			return nil, errcode.ToBiz(err)
		}
		h.users.Add(req.Uid)
	} else {
		found, err := h.users.Existing(ctx, []string{req.Uid})
		if err != nil {
			return nil, errcode.Biz(errcode.Unavailable, "%v", err)
		}
		if !found[req.Uid] {
			return nil, errcode.Biz(errcode.UserNotFound, "no user %q", req.Uid)
		}
	}
	exp := h.now().Add(ttl)
	tok, err := auth.Sign(h.cfg.TokenSecret, auth.Claims{UID: req.Uid, Device: req.Device, Expires: exp})
	if err != nil {
		return nil, errcode.Biz(errcode.Internal, "%v", err)
	}
	return &logic.IssueTokenResp{Token: tok, ExpiresAtUnix: exp.Unix()}, nil
}

// CreateUsers registers users that do not exist yet.
func (h *Handler) CreateUsers(ctx context.Context, req *logic.CreateUsersReq) (*logic.CreateUsersResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	if len(req.Users) == 0 || len(req.Users) > maxBatch {
		return nil, errcode.Biz(errcode.BadRequest, "between 1 and %d users per call", maxBatch)
	}
	now := h.now().UnixMilli()
	uids := make([]string, 0, len(req.Users))
	for _, u := range req.Users {
		if u == nil || !ids.ValidUID(u.Uid) {
			return nil, errcode.Biz(errcode.BadField, "invalid uid")
		}
		if u.CreatedAtMs == 0 {
			u.CreatedAtMs = now
		}
		uids = append(uids, u.Uid)
	}
	resp, err := h.dp.UpsertUsers(ctx, &dataproxy.UpsertUsersReq{Users: req.Users})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	h.users.Add(uids...)
	return &logic.CreateUsersResp{Created: resp.Created}, nil
}

func routesOf(gw string, conns []*logic.ConnInfo) ([]*common.Route, error) {
	if gw == "" {
		return nil, errcode.Biz(errcode.BadField, "missing gateway id")
	}
	if len(conns) > maxBatch {
		return nil, errcode.Biz(errcode.BadRequest, "at most %d connections per call", maxBatch)
	}
	out := make([]*common.Route, 0, len(conns))
	for _, c := range conns {
		if c == nil || !ids.ValidUID(c.Uid) || !ids.ValidDevice(c.Device) {
			return nil, errcode.Biz(errcode.BadField, "invalid connection")
		}
		out = append(out, &common.Route{Uid: c.Uid, Device: c.Device, GatewayId: gw, ConnId: c.ConnId})
	}
	return out, nil
}

// Connect records (or refreshes) the routes of a gateway's connections.
// For new connections (not a refresh) it applies the login policy (see
// kicksFor): the connections they replace, older ones of the same device
// id or of the same single-login device kind, are kicked once the new
// routes are stored. Those of the call itself that a later one of the call
// replaces get no route and are listed in the answer's refused, so the
// gateway closes them without opening them; a gateway that does not say it
// does (closes_refused, false in gateways that predate refused) gets a
// kick record for each of them instead.
func (h *Handler) Connect(ctx context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error) {
	routes, err := routesOf(req.GatewayId, req.Conns)
	if err != nil {
		return nil, err
	}
	resp := &logic.ConnectResp{}
	var kicks []kick
	if !req.Refresh {
		var keep []bool
		if kicks, keep, err = h.kicksFor(ctx, req.GatewayId, req.Conns); err != nil {
			return nil, errcode.ToBiz(err)
		}
		kept := routes[:0]
		for i, rt := range routes {
			if keep[i] {
				kept = append(kept, rt)
			}
		}
		routes = kept
	}
	if len(routes) > 0 {
		ttl := int32(h.cfg.RouteTTL / time.Second)
		if _, err := h.dp.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: routes, TtlSeconds: ttl}); err != nil {
			return nil, errcode.ToBiz(err)
		}
	}
	records := kicks[:0:0]
	for _, k := range kicks {
		if k.refused {
			resp.Refused = append(resp.Refused, &logic.RefusedConn{ConnId: k.route.ConnId, Reason: k.reason(), Device: k.device})
			if req.ClosesRefused {
				continue
			}
		}
		records = append(records, k)
	}
	h.sendKicks(records)
	return resp, nil
}

// Disconnect removes routes, each only if it still names that connection.
func (h *Handler) Disconnect(ctx context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	routes, err := routesOf(req.GatewayId, req.Conns)
	if err != nil {
		return nil, err
	}
	if len(routes) > 0 {
		if _, err := h.dp.DelRoutes(ctx, &dataproxy.DelRoutesReq{Routes: routes}); err != nil {
			return nil, errcode.ToBiz(err)
		}
	}
	return &logic.DisconnectResp{}, nil
}

// Sync returns messages of a conversation the user takes part in. A
// conversation with no message yet reads as empty.
func (h *Handler) Sync(ctx context.Context, req *logic.SyncReq) (*logic.SyncResp, error) {
	if !ids.ValidUID(req.Uid) {
		return nil, errcode.Biz(errcode.BadField, "invalid uid")
	}
	member := ids.Member(req.ConvId, req.Uid)
	if g, ok := strings.CutPrefix(req.ConvId, "g:"); ok && ids.ValidConv(req.ConvId) {
		var err error
		if member, err = h.isMember(ctx, g, req.Uid); err != nil {
			return nil, errcode.ToBiz(err)
		}
	}
	if !member {
		// The same answer for "no such conversation" and "not yours", so
		// conversation ids cannot be probed.
		return nil, errcode.Biz(errcode.ConvNotFound, "no conversation %q", req.ConvId)
	}
	if req.AfterSeq < 0 || req.Limit < 0 {
		return nil, errcode.Biz(errcode.BadField, "negative after or limit")
	}
	resp, err := h.dp.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: req.ConvId, AfterSeq: req.AfterSeq, Limit: req.Limit})
	if err != nil {
		if c, _ := errcode.Of(err); c == errcode.ConvNotFound {
			return &logic.SyncResp{Messages: []*common.Message{}}, nil
		}
		return nil, errcode.ToBiz(err)
	}
	return &logic.SyncResp{Messages: resp.Messages, HasMore: resp.HasMore, LastSeq: resp.LastSeq}, nil
}

// Conversations lists the user's conversations, newest first.
func (h *Handler) Conversations(ctx context.Context, req *logic.ConversationsReq) (*logic.ConversationsResp, error) {
	if !ids.ValidUID(req.Uid) {
		return nil, errcode.Biz(errcode.BadField, "invalid uid")
	}
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, errcode.Biz(errcode.BadField, "negative limit")
	case limit == 0:
		limit = defaultConvsLimit
	case limit > maxConvsLimit:
		limit = maxConvsLimit
	}
	resp, err := h.dp.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: req.Uid, Limit: limit})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	return &logic.ConversationsResp{Items: resp.Items}, nil
}
