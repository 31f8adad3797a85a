package handler

import (
	"context"
	"io"
	"log/slog"
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
