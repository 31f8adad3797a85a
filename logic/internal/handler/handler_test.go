package handler

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client/callopt"

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

// An IssueToken ttl_seconds below 0 is refused; a default lifetime that is
// not positive (logic's main refuses one) is taken as 24 h rather than
// issuing expired tokens.
func TestTokenTTLNotPositive(t *testing.T) {
	dp := dpfake.New()
	ctx := context.Background()
	h := newHandler(dp)
	if _, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "alice", Device: "web", TtlSeconds: -1, CreateUser: true}); code(err) != errcode.BadField {
		t.Fatalf("negative ttl_seconds: %v", err)
	}
	v, _ := auth.NewVerifier([]byte("tok"))
	for _, ttl := range []time.Duration{-time.Hour, 0} {
		h := New(Config{AdminSecret: "admin", TokenSecret: []byte("tok"), TokenTTL: ttl}, dp, users.New(dp, time.Minute, 100), nil, nil,
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		resp, err := h.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: "admin", Uid: "alice", Device: "web", CreateUser: true})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := v.Verify(resp.Token); err != nil || time.Until(c.Expires) < 23*time.Hour {
			t.Fatalf("TokenTTL %v: token %+v, %v", ttl, c, err)
		}
	}
}

// routeTTLDP records the ttl_seconds of SetRoutes.
type routeTTLDP struct {
	*dpfake.DP
	ttl int32
}

func (d *routeTTLDP) SetRoutes(ctx context.Context, req *dataproxy.SetRoutesReq, o ...callopt.Option) (*dataproxy.SetRoutesResp, error) {
	d.ttl = req.TtlSeconds
	return d.DP.SetRoutes(ctx, req, o...)
}

// dataproxy takes a route TTL of 0 (its default) to 86400 s: a RouteTTL
// outside 1 s to 24 h (logic's main refuses one) is brought within.
func TestRouteTTLWithinDataproxyRange(t *testing.T) {
	for ttl, want := range map[time.Duration]int32{0: 0, 500 * time.Millisecond: 1, time.Minute: 60, 24 * time.Hour: 86400, 48 * time.Hour: 86400} {
		dp := &routeTTLDP{DP: dpfake.New("alice")}
		h := New(Config{AdminSecret: "admin", TokenSecret: []byte("tok"), RouteTTL: ttl}, dp, users.New(dp, time.Minute, 100), nil, nil,
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		if _, err := h.Connect(context.Background(), &logic.ConnectReq{GatewayId: "gw1", Conns: []*logic.ConnInfo{{Uid: "alice", Device: "web", ConnId: 1}}}); err != nil {
			t.Fatal(err)
		}
		if dp.ttl != want {
			t.Errorf("RouteTTL %v: ttl_seconds %d, want %d", ttl, dp.ttl, want)
		}
	}
}

// deadlineDP records the deadline GetMessage is called with.
type deadlineDP struct {
	*dpfake.DP
	mu       sync.Mutex
	deadline time.Time
}

func (d *deadlineDP) GetMessage(ctx context.Context, req *dataproxy.GetMessageReq, o ...callopt.Option) (*dataproxy.GetMessageResp, error) {
	d.mu.Lock()
	d.deadline, _ = ctx.Deadline()
	d.mu.Unlock()
	return d.DP.GetMessage(ctx, req, o...)
}

// Send's wait_ms is capped at 30 s, as Recall's is: a huge one would hold
// the call (and a goroutine polling dataproxy) for days.
func TestSendWaitCapped(t *testing.T) {
	dp := &deadlineDP{DP: dpfake.New("system", "bob")}
	h := New(Config{AdminSecret: "admin", TokenSecret: []byte("tok")}, dp, users.New(dp, time.Minute, 100), nil, nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	conv := ids.P2P("bob", "system")
	// Stored already: Send answers from its first lookup.
	if _, err := dp.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{{ConvId: conv, Sender: "system", Recipient: "bob", ClientMsgId: "m1", Body: "x"}}}); err != nil {
		t.Fatal(err)
	}
	for wait, want := range map[int32]time.Duration{0: 5 * time.Second, 1000: time.Second, 30_000: 30 * time.Second, 30_001: 30 * time.Second, math.MaxInt32: 30 * time.Second} {
		start := time.Now()
		r, err := h.Send(ctx, &logic.SendReq{AdminSecret: "admin", From: "system", To: "bob", ClientMsgId: "m1", Body: "x", WaitMs: wait})
		if err != nil || !r.Duplicate {
			t.Fatalf("send: %+v %v", r, err)
		}
		dp.mu.Lock()
		got := dp.deadline.Sub(start)
		dp.mu.Unlock()
		if got < want-time.Second || got > want+time.Second {
			t.Errorf("wait_ms %d: waits %v, want %v", wait, got, want)
		}
	}
}
