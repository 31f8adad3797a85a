package handler

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

func newHandler(dp *dpfake.DP) *Handler {
	return New(Config{AdminSecret: "admin", TokenSecret: []byte("tok"), RouteTTL: time.Minute},
		dp, users.New(dp, time.Minute, 100), nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func code(err error) errcode.Code { c, _ := errcode.Of(err); return c }

func TestIssueToken(t *testing.T) {
	dp := dpfake.New()
	h := newHandler(dp)
	ctx := context.Background()
	if _, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "wrong", Uid: "alice", Device: "web", CreateUser: true}); code(err) != errcode.Unauthorized {
		t.Fatalf("wrong admin secret: %v", err)
	}
	if _, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "a:b", Device: "web"}); code(err) != errcode.BadField {
		t.Fatalf("bad uid: %v", err)
	}
	if _, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "ghost", Device: "web", CreateUser: false}); code(err) != errcode.UserNotFound {
		t.Fatalf("unknown user without create: %v", err)
	}
	resp, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "alice", Device: "web", TtlSeconds: 60, CreateUser: true})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier([]byte("tok"))
	c, err := v.Verify(resp.Token)
	if err != nil || c.UID != "alice" || c.Device != "web" {
		t.Fatalf("issued token: %+v %v", c, err)
	}
	if d := time.Until(c.Expires); d > time.Minute || d < 50*time.Second {
		t.Fatalf("ttl not applied: expires in %v", d)
	}
	got, _ := dp.GetUsers(ctx, &dataproxy.GetUsersReq{Uids: []string{"alice"}})
	if len(got.Users) != 1 {
		t.Fatal("IssueToken did not create the user")
	}
	// A ttl too large for a time.Duration is cut to the longest allowed,
	// not wrapped around.
	resp, err = h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "alice", Device: "web", TtlSeconds: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = v.Verify(resp.Token); err != nil || time.Until(c.Expires) < time.Hour {
		t.Fatalf("token with a huge ttl: expires in %v (%v)", time.Until(c.Expires), err)
	}
}

func TestRoutesAndSync(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	h := newHandler(dp)
	ctx := context.Background()
	conns := []*logic.ConnInfo{{Uid: "alice", Device: "web", ConnId: 1}}
	if _, err := h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw1", Conns: conns}); err != nil {
		t.Fatal(err)
	}
	if len(dp.Routes) != 1 || dp.Routes[0].GatewayId != "gw1" {
		t.Fatalf("routes after connect: %+v", dp.Routes)
	}
	// A newer connection of the same device replaced it: disconnecting
	// the old one must leave the new route alone.
	_, _ = h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw2", Conns: []*logic.ConnInfo{{Uid: "alice", Device: "web", ConnId: 9}}})
	_, _ = h.Disconnect(ctx, &logic.DisconnectReq{GatewayId: "gw1", Conns: conns})
	if len(dp.Routes) != 1 || dp.Routes[0].GatewayId != "gw2" {
		t.Fatalf("routes after stale disconnect: %+v", dp.Routes)
	}
	if _, err := h.Connect(ctx, &logic.ConnectReq{Conns: conns}); code(err) != errcode.BadField {
		t.Fatalf("connect without gateway: %v", err)
	}

	conv := ids.P2P("alice", "bob")
	// Nothing sent yet: an empty conversation, not an error.
	r, err := h.Sync(ctx, &logic.SyncReq{Uid: "alice", ConvId: conv})
	if err != nil || len(r.Messages) != 0 {
		t.Fatalf("empty sync: %+v %v", r, err)
	}
	_, _ = dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: "1", Body: "x"}}})
	r, err = h.Sync(ctx, &logic.SyncReq{Uid: "bob", ConvId: conv, Limit: 10})
	if err != nil || len(r.Messages) != 1 || r.LastSeq != 1 {
		t.Fatalf("sync: %+v %v", r, err)
	}
	if _, err := h.Sync(ctx, &logic.SyncReq{Uid: "carol", ConvId: conv}); code(err) != errcode.ConvNotFound {
		t.Fatalf("non-member sync: %v", err)
	}
	cs, err := h.Conversations(ctx, &logic.ConversationsReq{Uid: "bob"})
	if err != nil || len(cs.Items) != 1 || cs.Items[0].Peer != "alice" {
		t.Fatalf("conversations: %+v %v", cs, err)
	}
}

func TestCreateUsers(t *testing.T) {
	dp := dpfake.New("alice")
	h := newHandler(dp)
	resp, err := h.CreateUsers(context.Background(), &logic.CreateUsersReq{AdminSecret: "admin", Users: []*common.User{{Uid: "alice"}, {Uid: "bob"}}})
	if err != nil || resp.Created != 1 {
		t.Fatalf("CreateUsers: %+v %v", resp, err)
	}
	if _, err := h.CreateUsers(context.Background(), &logic.CreateUsersReq{AdminSecret: "admin"}); code(err) != errcode.BadRequest {
		t.Fatalf("empty CreateUsers: %v", err)
	}
}
