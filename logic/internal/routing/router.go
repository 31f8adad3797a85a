// Package routing finds where users are connected: their routes from the
// route table (Redis, through dataproxy), keeping only routes whose gateway
// is alive in etcd. A gateway that died leaves routes behind until their
// TTL runs out; filtering by the live set treats them as gone at once.
//
// Router is safe for concurrent use.
package routing

import (
	"context"
	"fmt"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/discovery"
)

// Gateways is the live gateway set (a *discovery.Watcher in production).
type Gateways interface {
	Get(id string) (discovery.Gateway, bool)
	// Confirm is Get that asks etcd itself when the watched set lacks id.
	Confirm(ctx context.Context, id string) bool
}

// Router looks up routes.
type Router struct {
	dp  dpclient.Client
	gws Gateways
}

// New returns a Router.
func New(dp dpclient.Client, gws Gateways) *Router { return &Router{dp: dp, gws: gws} }

// Alive reports whether the gateway with id is registered.
func (r *Router) Alive(id string) bool {
	_, ok := r.gws.Get(id)
	return ok
}

// Batches returns the partition count of the downstream topic of the
// gateway with id when the gateway takes BATCH records.
func (r *Router) Batches(id string) (partitions int, ok bool) {
	g, ok := r.gws.Get(id)
	if !ok || !g.Batches || g.DownPartitions <= 0 {
		return 0, false
	}
	return g.DownPartitions, true
}

// SenderAlive reports whether the gateway that produced a record is still
// registered, asking etcd when the watch lags behind a gateway that has
// just started.
func (r *Router) SenderAlive(ctx context.Context, id string) bool {
	return id != "" && r.gws.Confirm(ctx, id)
}

// Lookup returns the live routes of each uid that has any.
func (r *Router) Lookup(ctx context.Context, uids []string) (map[string][]*common.Route, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	var routes []*common.Route
	for len(uids) > 0 {
		n := min(len(uids), MaxLookup)
		resp, err := r.dp.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: uids[:n]})
		if err != nil {
			return nil, fmt.Errorf("get routes: %w", err)
		}
		routes = append(routes, resp.Routes...)
		uids = uids[n:]
	}
	return r.Live(routes), nil
}

// MaxLookup is the most users one GetRoutes call names, well under what
// dataproxy accepts in one call (dataproxy.MAX_BATCH): a large batch of
// sends between distinct users takes several.
const MaxLookup = 500

// Live groups routes by user, leaving out those of gateways that are not
// alive (routes read elsewhere, for example with an append).
func (r *Router) Live(routes []*common.Route) map[string][]*common.Route {
	out := make(map[string][]*common.Route)
	for _, rt := range routes {
		if r.Alive(rt.GatewayId) {
			out[rt.Uid] = append(out[rt.Uid], rt)
		}
	}
	return out
}
