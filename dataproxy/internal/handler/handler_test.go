package handler_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/inbox"
	"github.com/gochat-im/gochat/dataproxy/internal/redistest"
	"github.com/gochat-im/gochat/dataproxy/internal/repair"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

// redisAddr is the Redis the tests use.
const redisAddr = redistest.Addr

type env struct {
	st  *store.SQLStore
	rdb *redis.Client
	reg *prometheus.Registry
	cli dpsvc.Client
}

// start serves a Handler over SQLite in a temporary directory and the real
// Redis (random key prefix, cleaned up) on a random port, and returns a
// client of it made the way logic makes one.
func start(t *testing.T) *env { return startCfg(t, handler.Config{MaxBatch: 10}) }

// startCfg is start with a handler configuration.
func startCfg(t testing.TB, cfg handler.Config) *env {
	t.Helper()
	return startAt(t, cfg, filepath.Join(t.TempDir(), "gochat.db"))
}

// startAt is startCfg with the SQLite file at path.
func startAt(t testing.TB, cfg handler.Config, path string) *env {
	t.Helper()
	st := openStore(t, path)
	rdb, prefix := redistest.Client(t)
	reg := prometheus.NewRegistry()
	h := build(t, cfg, st, rdb, prefix, reg)
	return &env{st: st, rdb: rdb, reg: reg, cli: serve(t, h)}
}

// openStore opens a ready SQLite store at path, closed when the test ends.
func openStore(t testing.TB, path string) *store.SQLStore {
	t.Helper()
	st, err := store.OpenSQLite(store.SQLiteConfig{Path: path, Options: store.Options{MaxBody: 1024}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// build makes a Handler the way the service does: a route table with
// group route sets and an inbox, both on rdb under prefix and reading st,
// and a repair queue (stopped when the test ends).
func build(t testing.TB, cfg handler.Config, st *store.SQLStore, rdb redis.UniversalClient, prefix string, reg prometheus.Registerer) *handler.Handler {
	t.Helper()
	return buildOver(t, cfg, st, st, rdb, prefix, reg)
}

// buildOver is build with the handler calling hs (st wrapped by a test)
// instead of st.
func buildOver(t testing.TB, cfg handler.Config, st *store.SQLStore, hs store.Store, rdb redis.UniversalClient, prefix string, reg prometheus.Registerer) *handler.Handler {
	t.Helper()
	rq, err := repair.New(repair.Config{Interval: 50 * time.Millisecond}, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rq.Close)
	rt, err := routes.New(routes.Config{Prefix: prefix, Groups: st, Repair: rq}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := inbox.New(inbox.Config{Prefix: prefix, Repair: rq}, rdb, st)
	if err != nil {
		t.Fatal(err)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h, err := handler.New(cfg, hs, rt, ib, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(t testing.TB, h dataproxy.DataProxy) dpsvc.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svr := dpsvc.NewServer(h, server.WithListener(ln), server.WithExitWaitTime(100*time.Millisecond), server.WithMetaHandler(transmeta.ServerTTHeaderHandler))
	done := make(chan error, 1)
	go func() { done <- svr.Run() }()
	t.Cleanup(func() {
		if err := svr.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		<-done
	})
	// Business status errors travel in TTHeader: the server needs the
	// TTHeader meta handler (rpcx.ServerOptions sets it in production) and
	// the client the TTHeader transport and meta handler (set by
	// rpcx.ClientOptions), or a business error arrives as an empty success.
	opts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.DataProxyService, HostPorts: []string{ln.Addr().String()}, Caller: "test"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := dpsvc.NewClient(rpcx.DataProxyService, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

func wantCode(t *testing.T, err error, want errcode.Code) {
	t.Helper()
	if got, msg := errcode.Of(err); got != want {
		t.Fatalf("error %v: code %d (%q), want %d", err, got, msg, want)
	}
}

func TestMessagesOverKitex(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	item := func(cmid, body string) *dataproxy.AppendItem {
		return &dataproxy.AppendItem{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: cmid, ContentType: "text/plain", Body: body}
	}
	resp, err := e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		item("1", "hi"), nil, item("2", strings.Repeat("x", 1025)), item("3", "there"), item("1", "again"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Results
	if len(r) != 5 || r[0].Seq != 1 || r[1].ErrorCode != int32(errcode.BadField) || r[2].ErrorCode != int32(errcode.TooLarge) ||
		r[3].Seq != 2 || !r[4].Duplicate || r[4].Seq != 1 {
		t.Fatalf("results: %+v", r)
	}

	sync, err := e.cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv, AfterSeq: 0, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(sync.Messages) != 1 || sync.Messages[0].Body != "hi" || !sync.HasMore || sync.LastSeq != 2 {
		t.Fatalf("sync: %+v", sync)
	}

	// Business errors reach the client with their codes.
	_, err = e.cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: ids.P2P("carol", "dave")})
	wantCode(t, err, errcode.ConvNotFound)
	_, err = e.cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: "nonsense"})
	wantCode(t, err, errcode.BadField)
	many := make([]*dataproxy.AppendItem, 11)
	for i := range many {
		many[i] = item("m", "x")
	}
	_, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: many})
	wantCode(t, err, errcode.BadRequest)

	convs, err := e.cli.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: "bob"})
	if err != nil || len(convs.Items) != 1 || convs.Items[0].Peer != "alice" || convs.Items[0].LastSeq != 2 || convs.Items[0].Kind != ids.KindP2P {
		t.Fatalf("conversations: %+v %v", convs, err)
	}

	up, err := e.cli.UpsertUsers(ctx, &dataproxy.UpsertUsersReq{Users: []*common.User{{Uid: "alice", Name: "Alice"}, {Uid: "bob"}}})
	if err != nil || up.Created != 2 {
		t.Fatalf("upsert: %+v %v", up, err)
	}
	_, err = e.cli.UpsertUsers(ctx, &dataproxy.UpsertUsersReq{Users: []*common.User{{Uid: "no spaces"}}})
	wantCode(t, err, errcode.BadField)
	users, err := e.cli.GetUsers(ctx, &dataproxy.GetUsersReq{Uids: []string{"bob", "zed", "alice"}})
	if err != nil || len(users.Users) != 2 || users.Users[0].Uid != "bob" || users.Users[1].Name != "Alice" {
		t.Fatalf("users: %+v %v", users, err)
	}

	// A recall is stored as an event; the message loses its body.
	resp, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
		{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: "r1", ContentType: "gochat.recall", RecallSeq: 1, RecallWindowMs: 60_000},
		{ConvId: conv, Sender: "bob", Recipient: "alice", ClientMsgId: "r2", RecallSeq: 2, RecallWindowMs: 60_000},
		item("4", "after the recall"),
	}})
	if err != nil || resp.Results[0].Seq != 3 || resp.Results[1].ErrorCode != int32(errcode.Forbidden) || resp.Results[2].Seq != 4 {
		t.Fatalf("recall: %+v %v", resp, err)
	}
	sync, err = e.cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv})
	if err != nil || len(sync.Messages) != 4 || !sync.Messages[0].Recalled || sync.Messages[0].Body != "" || sync.Messages[2].RefSeq != 1 ||
		sync.Messages[2].ContentType != "gochat.recall" {
		t.Fatalf("sync after the recall: %+v %v", sync, err)
	}
	got, err := e.cli.GetMessage(ctx, &dataproxy.GetMessageReq{ConvId: conv, Sender: "alice", ClientMsgId: "3"})
	if err != nil || !got.Found || got.Message.Seq != 2 || got.Message.Body != "there" {
		t.Fatalf("GetMessage: %+v %v", got, err)
	}

	// The metrics saw it all.
	if n := calls(t, e.reg, "SyncMessages", "3002"); n != 1 {
		t.Fatalf("SyncMessages 3002 calls: %v", n)
	}
	if n := calls(t, e.reg, "AppendMessages", "ok"); n != 2 {
		t.Fatalf("AppendMessages ok calls: %v", n)
	}

	// A failed database is Unavailable, not a crash.
	_ = e.st.Close()
	_, err = e.cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv})
	wantCode(t, err, errcode.Unavailable)
	_, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{item("9", "x")}})
	wantCode(t, err, errcode.Unavailable)
}

// calls reads dataproxy_rpc_calls_total{method, code} from reg.
func calls(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dataproxy_rpc_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestRoutesOverKitex(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	old := &common.Route{Uid: "alice", Device: "phone", GatewayId: "gw-1", ConnId: 1}
	web := &common.Route{Uid: "alice", Device: "web", GatewayId: "gw-1", ConnId: 2}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{old, web}, TtlSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	newer := &common.Route{Uid: "alice", Device: "phone", GatewayId: "gw-2", ConnId: 7}
	if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{newer}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.DelRoutes(ctx, &dataproxy.DelRoutesReq{Routes: []*common.Route{old, web}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: []string{"alice", "bad uid", "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 1 || got.Routes[0].GatewayId != "gw-2" || got.Routes[0].ConnId != 7 {
		t.Fatalf("routes: %+v", got.Routes)
	}
	// An append can bring the routes of the users it is pushed to: the same
	// answer as GetRoutes.
	app, err := e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{
		Items:     []*dataproxy.AppendItem{{ConvId: ids.P2P("alice", "bob"), Sender: "bob", Recipient: "alice", ClientMsgId: "r1", ContentType: "text/plain", Body: "hi"}},
		RouteUids: []string{"alice", "bad uid", "bob"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if app.Results[0].Seq != 1 || !app.RoutesRead || len(app.Routes) != 1 || app.Routes[0].GatewayId != "gw-2" || app.Routes[0].ConnId != 7 {
		t.Fatalf("append with routes: %+v", app)
	}
	// Without route uids it reads none.
	app, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{
		Items: []*dataproxy.AppendItem{{ConvId: ids.P2P("alice", "bob"), Sender: "bob", Recipient: "alice", ClientMsgId: "r2", ContentType: "text/plain", Body: "hi"}},
	})
	if err != nil || app.RoutesRead || len(app.Routes) != 0 || app.Results[0].Seq != 2 {
		t.Fatalf("append without route uids: %+v %v", app, err)
	}
	// More route uids than a call may carry are not read; the items are
	// stored all the same.
	app, err = e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{
		Items:     []*dataproxy.AppendItem{{ConvId: ids.P2P("alice", "bob"), Sender: "bob", Recipient: "alice", ClientMsgId: "r3", ContentType: "text/plain", Body: "hi"}},
		RouteUids: []string{"alice", "alice", "alice", "alice", "alice", "alice", "alice", "alice", "alice", "alice", "alice"},
	})
	if err != nil || app.RoutesRead || len(app.Routes) != 0 || app.Results[0].Seq != 3 {
		t.Fatalf("append with too many route uids: %+v %v", app, err)
	}

	_, err = e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{{Uid: "alice", Device: "phone"}}})
	wantCode(t, err, errcode.BadField)
	_, err = e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{newer}, TtlSeconds: -1})
	wantCode(t, err, errcode.BadField)
	_, err = e.cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: make([]string, 11)})
	wantCode(t, err, errcode.BadRequest)
}

// With Redis unreachable, route calls fail as Unavailable.
func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: dead, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	st, err := store.OpenSQLite(store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "gochat.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli := serve(t, build(t, handler.Config{}, st, rdb, "", nil))
	_, err = cli.GetRoutes(context.Background(), &dataproxy.GetRoutesReq{Uids: []string{"alice"}})
	wantCode(t, err, errcode.Unavailable)
	_, err = cli.SetRoutes(context.Background(), &dataproxy.SetRoutesReq{Routes: []*common.Route{{Uid: "a", Device: "d", GatewayId: "g"}}})
	wantCode(t, err, errcode.Unavailable)
	// An append whose route lookup fails still stores and answers its
	// items; routes_read tells the caller to look the routes up itself.
	app, err := cli.AppendMessages(context.Background(), &dataproxy.AppendMessagesReq{
		Items:     []*dataproxy.AppendItem{{ConvId: ids.P2P("alice", "bob"), Sender: "alice", Recipient: "bob", ClientMsgId: "1", ContentType: "text/plain", Body: "hi"}},
		RouteUids: []string{"bob"},
	})
	if err != nil || len(app.Results) != 1 || app.Results[0].Seq != 1 || app.RoutesRead || len(app.Routes) != 0 {
		t.Fatalf("append with Redis down: %+v %v", app, err)
	}
}
