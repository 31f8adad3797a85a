// Package logicrpc is the gateway's Kitex client of the logic service,
// found through etcd (pkg/rpcx), trimmed to the calls the gateway makes so
// the rest of the gateway depends on a small interface it can fake.
//
// Concurrency: a Client is safe for concurrent use.
package logicrpc

import (
	"context"
	"fmt"

	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

// Client calls logic.
type Client struct {
	c logicsvc.Client
}

// New returns a client for rpcx.LogicService with the options of
// rpcx.ClientOptions (cfg.Service is set for the caller).
func New(cfg rpcx.ClientConfig) (*Client, error) {
	cfg.Service = rpcx.LogicService
	if cfg.Caller == "" {
		cfg.Caller = "gochat.gateway"
	}
	opts, err := rpcx.ClientOptions(cfg)
	if err != nil {
		return nil, err
	}
	c, err := logicsvc.NewClient(rpcx.LogicService, opts...)
	if err != nil {
		return nil, fmt.Errorf("logic client: %w", err)
	}
	return &Client{c: c}, nil
}

// Connect registers routes.
func (c *Client) Connect(ctx context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error) {
	return c.c.Connect(ctx, req)
}

// Disconnect removes routes.
func (c *Client) Disconnect(ctx context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	return c.c.Disconnect(ctx, req)
}

// Sync reads a conversation's messages.
func (c *Client) Sync(ctx context.Context, req *logic.SyncReq) (*logic.SyncResp, error) {
	return c.c.Sync(ctx, req)
}

// Conversations lists a user's conversations.
func (c *Client) Conversations(ctx context.Context, req *logic.ConversationsReq) (*logic.ConversationsResp, error) {
	return c.c.Conversations(ctx, req)
}

// ClientCall passes a client frame that logic answers (group operations).
func (c *Client) ClientCall(ctx context.Context, req *logic.ClientCallReq) (*logic.ClientCallResp, error) {
	return c.c.ClientCall(ctx, req)
}

// Cursors reads users' inbox cursors, for pongs.
func (c *Client) Cursors(ctx context.Context, req *logic.CursorsReq) (*logic.CursorsResp, error) {
	return c.c.Cursors(ctx, req)
}
