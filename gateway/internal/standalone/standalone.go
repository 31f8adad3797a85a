// Package standalone is a stand-in for the logic service, for load tests of
// the gateway alone: it accepts every route registration at once and
// answers reads with "unavailable". With it a gateway needs only etcd and
// Kafka, so memory and push benchmarks can hold hundreds of thousands of
// connections without loading logic and Redis with their routes.
//
// It is never used unless the operator asks for it (gateway -standalone),
// and the gateway logs a warning when it is: pushes still arrive through
// the gateway's downstream topic, but logic does not know the connections,
// so no message sent through logic reaches them.
//
// Concurrency: Logic is stateless and safe for concurrent use.
package standalone

import (
	"context"

	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
)

// Logic accepts every Connect and Disconnect and refuses reads.
type Logic struct{}

// Connect accepts the routes without storing them.
func (Logic) Connect(context.Context, *logic.ConnectReq) (*logic.ConnectResp, error) {
	return &logic.ConnectResp{}, nil
}

// Disconnect accepts the removal.
func (Logic) Disconnect(context.Context, *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	return &logic.DisconnectResp{}, nil
}

// Sync is not served in standalone mode.
func (Logic) Sync(context.Context, *logic.SyncReq) (*logic.SyncResp, error) {
	return nil, errUnavailable
}

// Conversations is not served in standalone mode.
func (Logic) Conversations(context.Context, *logic.ConversationsReq) (*logic.ConversationsResp, error) {
	return nil, errUnavailable
}

// ClientCall (group operations) is not served in standalone mode.
func (Logic) ClientCall(context.Context, *logic.ClientCallReq) (*logic.ClientCallResp, error) {
	return nil, errUnavailable
}

// Cursors knows no cursors: pongs go out without one (and without a
// failed call to count and log for every batch of pings).
func (Logic) Cursors(context.Context, *logic.CursorsReq) (*logic.CursorsResp, error) {
	return &logic.CursorsResp{}, nil
}

var errUnavailable = errcode.New(errcode.Unavailable, "gateway runs standalone (benchmark mode): no logic service")
