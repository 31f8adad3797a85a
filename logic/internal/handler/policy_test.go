package handler

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/discovery"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

type live map[string]bool

func (l live) Get(id string) (discovery.Gateway, bool)   { return discovery.Gateway{ID: id}, l[id] }
func (l live) Confirm(_ context.Context, id string) bool { return l[id] }

type recProducer struct {
	mu   sync.Mutex
	recs map[string][]*events.DownRecord
}

func (p *recProducer) Produce(topic string, _, value []byte, cb kafkax.Callback) error {
	var r events.DownRecord
	if err := kafkax.Decode(value, &r); err != nil {
		return err
	}
	p.mu.Lock()
	p.recs[topic] = append(p.recs[topic], &r)
	p.mu.Unlock()
	cb(nil)
	return nil
}

func TestLoginPolicyKicksOlderConnection(t *testing.T) {
	dp := dpfake.New("alice")
	prod := &recProducer{recs: map[string][]*events.DownRecord{}}
	policy, err := ParseLoginPolicy("phone=single, web=multi")
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{AdminSecret: "a", TokenSecret: []byte("t"), RouteTTL: time.Minute, LoginPolicy: policy}, dp,
		users.New(dp, time.Minute, 10), routing.New(dp, live{"gw1": true, "gw2": true}), prod, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	connect := func(gw string, refresh bool, c ...*logic.ConnInfo) {
		t.Helper()
		if _, err := h.Connect(ctx, &logic.ConnectReq{GatewayId: gw, Conns: c, Refresh: refresh}); err != nil {
			t.Fatal(err)
		}
	}
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "phone-a", ConnId: 1}, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 2})
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "web-2", ConnId: 3}) // web is multi: no kick
	if len(prod.recs) != 0 {
		t.Fatalf("kicked without cause: %v", prod.recs)
	}
	connect("gw2", false, &logic.ConnInfo{Uid: "alice", Device: "phone-b", ConnId: 9})
	kicks := prod.recs[kafkax.DownTopic("gw1")]
	if len(kicks) != 1 || kicks[0].CloseCode != protocol.CloseReplaced || kicks[0].Targets[0].ConnId != 1 {
		t.Fatalf("kicks = %+v", kicks)
	}
	// A refresh of the old connection must not kick the new one.
	connect("gw1", true, &logic.ConnInfo{Uid: "alice", Device: "phone-a", ConnId: 1})
	if len(prod.recs[kafkax.DownTopic("gw2")]) != 0 {
		t.Fatal("a refresh kicked a connection")
	}
	if _, err := ParseLoginPolicy("phone=once"); err == nil {
		t.Fatal("bad policy accepted")
	}
}

// newPolicyHandler returns a handler with the login policy, gateways gw1
// and gw2 alive, and the producer its kicks go to.
func newPolicyHandler(t *testing.T, dp *dpfake.DP, policy string) (*Handler, *recProducer) {
	t.Helper()
	p, err := ParseLoginPolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	prod := &recProducer{recs: map[string][]*events.DownRecord{}}
	h := New(Config{AdminSecret: "a", TokenSecret: []byte("t"), RouteTTL: time.Minute, LoginPolicy: p}, dp,
		users.New(dp, time.Minute, 10), routing.New(dp, live{"gw1": true, "gw2": true}), prod, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return h, prod
}

// kicked returns the kicks produced to gw's downstream topic since the
// last call, by connection id.
func kicked(t *testing.T, prod *recProducer, gw string) map[int64]protocol.Kick {
	t.Helper()
	prod.mu.Lock()
	defer prod.mu.Unlock()
	out := map[int64]protocol.Kick{}
	for _, r := range prod.recs[kafkax.DownTopic(gw)] {
		var k protocol.Kick
		if err := json.Unmarshal(r.Frame, &k); err != nil || k.Type != protocol.TypeKick {
			t.Fatalf("not a kick: %s (%v)", r.Frame, err)
		}
		if r.CloseCode != protocol.CloseReplaced || r.CloseReason != k.Reason || len(r.Targets) != 1 {
			t.Fatalf("kick record %+v", r)
		}
		out[r.Targets[0].ConnId] = k
	}
	delete(prod.recs, kafkax.DownTopic(gw))
	return out
}

// routedConns returns the connection ids dp has routes for.
func routedConns(dp *dpfake.DP) map[int64]string {
	out := map[int64]string{}
	for _, r := range dp.Routes {
		out[r.ConnId] = r.Device
	}
	return out
}

// The gateway batches new connections into one Connect call: of those of
// one user and one single-login kind the last wins, the others are kicked
// as by a later login and get no route; those of one device id likewise.
func TestLoginPolicyWithinOneConnect(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	h, prod := newPolicyHandler(t, dp, "phone=single")
	ctx := context.Background()
	if _, err := h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw2", Conns: []*logic.ConnInfo{{Uid: "alice", Device: "phone-old", ConnId: 7}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw1", Conns: []*logic.ConnInfo{
		{Uid: "alice", Device: "phone-a", ConnId: 1},
		{Uid: "bob", Device: "phone-a", ConnId: 2}, // another user
		{Uid: "alice", Device: "web", ConnId: 3},
		{Uid: "alice", Device: "phone-b", ConnId: 4},
		{Uid: "alice", Device: "web", ConnId: 5}, // the same device id as 3
		{Uid: "alice", Device: "web-2", ConnId: 6},
		{Uid: "alice", Device: "phone-c", ConnId: 8},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := kicked(t, prod, "gw1")
	want := map[int64]protocol.Kick{
		1: {Type: protocol.TypeKick, Reason: "replaced", Device: "phone-c"},
		3: {Type: protocol.TypeKick, Reason: "same_device", Device: "web"},
		4: {Type: protocol.TypeKick, Reason: "replaced", Device: "phone-c"},
	}
	if !maps.Equal(got, want) {
		t.Fatalf("kicks on gw1 = %v, want %v", got, want)
	}
	// The same three are refused in the answer, so the gateway closes them
	// without opening them.
	if got := refusedOf(resp); !maps.Equal(got, want) {
		t.Fatalf("refused = %v, want %v", got, want)
	}
	if got := kicked(t, prod, "gw2"); len(got) != 1 || got[7] != (protocol.Kick{Type: protocol.TypeKick, Reason: "replaced", Device: "phone-c"}) {
		t.Fatalf("kicks on gw2 = %v", got)
	}
	// phone-old's route stays until its gateway disconnects it.
	if got, want := routedConns(dp), map[int64]string{2: "phone-a", 5: "web", 6: "web-2", 7: "phone-old", 8: "phone-c"}; !maps.Equal(got, want) {
		t.Fatalf("routed connections %v, want %v", got, want)
	}
	// The gateway retries the same batch (its first answer was lost):
	// the winners are not kicked by their own routes, the losers again.
	resp, err = h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw1", Conns: []*logic.ConnInfo{
		{Uid: "alice", Device: "phone-a", ConnId: 1}, {Uid: "alice", Device: "phone-c", ConnId: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := kicked(t, prod, "gw1"); len(got) != 1 || got[1].Device != "phone-c" {
		t.Fatalf("kicks on gw1 after a retry = %v", got)
	}
	if got := refusedOf(resp); len(got) != 1 || got[1].Device != "phone-c" {
		t.Fatalf("refused after a retry = %v", got)
	}
	// A refresh applies no policy and refuses nothing.
	resp, err = h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw1", Refresh: true, Conns: []*logic.ConnInfo{
		{Uid: "alice", Device: "phone-c", ConnId: 8}, {Uid: "alice", Device: "web", ConnId: 5}}})
	if err != nil || len(resp.Refused) != 0 {
		t.Fatalf("refresh: %v, %v", resp, err)
	}
	if got := routedConns(dp); len(got) != 5 || got[8] != "phone-c" {
		t.Fatalf("routed connections after a retry %v", got)
	}
	// A gateway that closes refused connections itself gets no kick
	// records for them, only for the connections they replace elsewhere.
	prod.mu.Lock()
	clear(prod.recs)
	prod.mu.Unlock()
	resp, err = h.Connect(ctx, &logic.ConnectReq{GatewayId: "gw1", ClosesRefused: true, Conns: []*logic.ConnInfo{
		{Uid: "bob", Device: "phone-x", ConnId: 20},
		{Uid: "bob", Device: "phone-y", ConnId: 21},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := refusedOf(resp); len(got) != 1 || got[20].Device != "phone-y" {
		t.Fatalf("refused with closes_refused = %v", got)
	}
	if got := kicked(t, prod, "gw1"); len(got) != 1 || got[2].Device != "phone-y" {
		t.Fatalf("kicks on gw1 with closes_refused = %v, want only bob's older phone (conn 2)", got)
	}
}

// refusedOf gives a Connect answer's refused connections as the kick
// frames the gateway sends them.
func refusedOf(resp *logic.ConnectResp) map[int64]protocol.Kick {
	out := map[int64]protocol.Kick{}
	for _, r := range resp.Refused {
		out[r.ConnId] = protocol.Kick{Type: protocol.TypeKick, Reason: r.Reason, Device: r.Device}
	}
	return out
}

func TestParseLoginPolicy(t *testing.T) {
	p, err := ParseLoginPolicy(" phone=single,web=multi,, pad.x=single")
	if err != nil || !maps.Equal(p, LoginPolicy{"phone": true, "web": false, "pad.x": true}) {
		t.Fatalf("policy %v, %v", p, err)
	}
	// A kind is the device id up to its first '-': no device has the
	// kind "phone-x", so such a policy would never apply.
	for _, bad := range []string{"phone-x=single", "-=single", "phone-=multi", "phone=once", "phone", "=single", "ph one=single"} {
		if p, err := ParseLoginPolicy(bad); err == nil {
			t.Errorf("%q accepted: %v", bad, p)
		}
	}
	if _, err := ParseLoginPolicy("phone-x=single"); err == nil || !strings.Contains(err.Error(), "'-'") {
		t.Errorf("error for phone-x: %v", err)
	}
}

// Routes are one per (user, device id): a newer connection with the same
// device id, of any kind, replaces the older one's route, so the older one
// is kicked rather than left open and never pushed to.
func TestSameDeviceKicksOlderConnection(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	h, prod := newPolicyHandler(t, dp, "phone=single")
	ctx := context.Background()
	connect := func(gw string, refresh bool, c ...*logic.ConnInfo) {
		t.Helper()
		if _, err := h.Connect(ctx, &logic.ConnectReq{GatewayId: gw, Conns: c, Refresh: refresh}); err != nil {
			t.Fatal(err)
		}
	}
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 1}, &logic.ConnInfo{Uid: "bob", Device: "web", ConnId: 2})
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "web-2", ConnId: 3}) // another device of a multi kind
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 1})   // the same connection again
	if len(prod.recs) != 0 {
		t.Fatalf("kicked without cause: %v", prod.recs)
	}
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 4})
	if got := kicked(t, prod, "gw1"); len(got) != 1 || got[1] != (protocol.Kick{Type: protocol.TypeKick, Reason: "same_device", Device: "web"}) {
		t.Fatalf("kicks = %v", got)
	}
	connect("gw2", false, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 4})
	if got := kicked(t, prod, "gw1"); len(got) != 1 || got[4].Reason != "same_device" {
		t.Fatalf("kicks on gw1 = %v", got)
	}
	// A refresh never kicks: the older connection may be re-registered
	// before its kick arrives.
	connect("gw1", true, &logic.ConnInfo{Uid: "alice", Device: "web", ConnId: 4})
	if len(prod.recs) != 0 {
		t.Fatalf("a refresh kicked: %v", prod.recs)
	}
	// A single-login kind: the same device id is named in the reason.
	connect("gw1", false, &logic.ConnInfo{Uid: "alice", Device: "phone-a", ConnId: 5})
	connect("gw2", false, &logic.ConnInfo{Uid: "alice", Device: "phone-a", ConnId: 6})
	if got := kicked(t, prod, "gw1"); len(got) != 1 || got[5] != (protocol.Kick{Type: protocol.TypeKick, Reason: "same_device", Device: "phone-a"}) {
		t.Fatalf("kicks = %v", got)
	}
	if got, want := routedConns(dp), map[int64]string{2: "web", 3: "web-2", 4: "web", 6: "phone-a"}; !maps.Equal(got, want) {
		t.Fatalf("routed connections %v, want %v", got, want)
	}
}
