package handler_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/tcpproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpsvc "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

func init() {
	// The driver logs every connection the outage tests break.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}

const mysqlServer = "root@tcp(127.0.0.1:3306)/"

// testDatabase returns the name of a fresh database, dropped when the test
// ends (the store creates it).
func testDatabase(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gochat_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		root, err := sql.Open("mysql", mysqlServer)
		if err != nil {
			t.Error(err)
			return
		}
		defer root.Close()
		if _, err := root.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

func proxyTo(t *testing.T, addr string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// eventually retries fn until it succeeds or 30 s pass.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With MariaDB and Redis cut off, every call fails with Unavailable (a
// business error the caller can act on, not a transport failure) and no
// append is stored; once they are back, the service works again by itself.
func TestOutagesOverKitex(t *testing.T) {
	dbProxy := proxyTo(t, "127.0.0.1:3306")
	redisProxy := proxyTo(t, redisAddr)
	mc := mysql.NewConfig()
	mc.User, mc.Net, mc.Addr, mc.DBName, mc.Timeout = "root", "tcp", dbProxy.Addr(), testDatabase(t), time.Second
	dsn := mc.FormatDSN()
	ctx := context.Background()
	st, err := store.OpenMySQL(ctx, store.MySQLConfig{DSN: dsn, MaxOpen: 4, MaxIdle: 4, CreateDatabase: true,
		Options: store.Options{GroupCommit: store.GroupCommit{TxTimeout: 2 * time.Second}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisProxy.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer rdb.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "gochat_test_" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		direct := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer direct.Close()
		keys, _ := direct.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			_ = direct.Del(context.Background(), keys...).Err()
		}
	})
	cli := serve(t, build(t, handler.Config{}, st, rdb, prefix, nil))

	conv := ids.P2P("alice", "bob")
	appendMsg := func(cmid string) (*dataproxy.AppendMessagesResp, error) {
		return cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
			{ConvId: conv, Sender: "alice", Recipient: "bob", ClientMsgId: cmid, Body: cmid}}})
	}
	route := &common.Route{Uid: "alice", Device: "phone", GatewayId: "gw-1", ConnId: 1}
	if _, err := appendMsg("before"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{route}}); err != nil {
		t.Fatal(err)
	}

	// The database goes away.
	dbProxy.Cut()
	for i := range 3 {
		_, err := appendMsg(fmt.Sprint("during", i))
		wantBizCode(t, err, errcode.Unavailable)
	}
	_, err = cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv})
	wantBizCode(t, err, errcode.Unavailable)
	_, err = cli.ListConversations(ctx, &dataproxy.ListConversationsReq{Uid: "alice"})
	wantBizCode(t, err, errcode.Unavailable)
	_, err = cli.GetUsers(ctx, &dataproxy.GetUsersReq{Uids: []string{"alice"}})
	wantBizCode(t, err, errcode.Unavailable)
	// Routes do not need the database.
	if got, err := cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: []string{"alice"}}); err != nil || len(got.Routes) != 1 {
		t.Fatalf("routes during the database outage: %+v %v", got, err)
	}

	// Redis goes away too.
	redisProxy.Cut()
	_, err = cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: []string{"alice"}})
	wantBizCode(t, err, errcode.Unavailable)
	_, err = cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: []*common.Route{route}})
	wantBizCode(t, err, errcode.Unavailable)
	_, err = cli.DelRoutes(ctx, &dataproxy.DelRoutesReq{Routes: []*common.Route{route}})
	wantBizCode(t, err, errcode.Unavailable)

	// Both come back; the service recovers without help.
	dbProxy.Restore()
	redisProxy.Restore()
	eventually(t, "append after the outage", func() error { _, err := appendMsg("after"); return err })
	eventually(t, "routes after the outage", func() error {
		got, err := cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: []string{"alice"}})
		if err == nil && len(got.Routes) != 1 {
			err = fmt.Errorf("routes %+v", got.Routes)
		}
		return err
	})
	// The failed appends stored nothing: the conversation holds exactly the
	// two that succeeded, with seqs 1 and 2.
	got, err := cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: conv})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 2 || got.Messages[0].ClientMsgId != "before" || got.Messages[1].ClientMsgId != "after" || got.Messages[1].Seq != 2 {
		t.Fatalf("after the outage: %+v", got.Messages)
	}
}

func wantBizCode(t *testing.T, err error, want errcode.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want code %d", want)
	}
	if !strings.Contains(fmt.Sprintf("%T", err), "BizStatus") {
		t.Fatalf("error %v (%T) is not a business status error", err, err)
	}
	wantCode(t, err, want)
}

// flushableEnv serves a handler over a sharded SQLite store (2 databases x
// 2 tables) and a miniredis that the test may flush.
func flushableEnv(t *testing.T) (*miniredis.Miniredis, *redis.Client, dpsvc.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := store.OpenSQLite(store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "gochat.db"), DBs: 2, Sync: "normal",
		Options: store.Options{Tables: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m, rdb, serve(t, build(t, handler.Config{}, st, rdb, "", nil))
}

// Redis loses everything (FLUSHALL, and its script cache with it) in the
// middle of appends: sequence numbers carry on from the database with no
// reuse and no gap; the routes are gone until the gateways set them again,
// which then works as before.
func TestRedisFlushMidAppends(t *testing.T) {
	m, rdb, cli := flushableEnv(t)
	ctx := context.Background()

	const writers, perWriter = 4, 60
	routesOf := func() []*common.Route {
		var rs []*common.Route
		for w := range writers {
			rs = append(rs, &common.Route{Uid: fmt.Sprint("user", w), Device: "phone", GatewayId: "gw-1", ConnId: int64(w)})
		}
		return rs
	}
	var members []string
	for w := 1; w < writers; w++ {
		members = append(members, fmt.Sprint("user", w))
	}
	if _, err := cli.UpsertUsers(ctx, &dataproxy.UpsertUsersReq{Users: []*common.User{{Uid: "user0"}, {Uid: "user1"}, {Uid: "user2"}, {Uid: "user3"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "all", Owner: "user0", Members: members}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: routesOf()}); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			from := fmt.Sprint("user", w)
			for i := range perWriter {
				if w == 0 && i == perWriter/2 {
					m.FlushAll()
					if err := rdb.ScriptFlush(ctx).Err(); err != nil {
						errs <- err
						return
					}
					close(flushed)
				}
				// Every writer talks to user0's group and to its own peer.
				resp, err := cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{
					{ConvId: "g:all", Sender: from, ClientMsgId: fmt.Sprint(i), Body: "x"},
					{ConvId: ids.P2P(from, "peer"), Sender: from, Recipient: "peer", ClientMsgId: fmt.Sprint(i), Body: "y"},
				}})
				if err != nil {
					errs <- err
					return
				}
				if r := resp.Results[1]; r.Seq != int64(i+1) || r.Duplicate || r.ErrorCode != 0 {
					errs <- fmt.Errorf("writer %d message %d: %+v", w, i, r)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	<-flushed
	// The group's seqs are 1..writers*perWriter with none missing or reused.
	seen := map[int64]bool{}
	for after := int64(0); ; {
		page, err := cli.SyncMessages(ctx, &dataproxy.SyncMessagesReq{ConvId: "g:all", AfterSeq: after, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range page.Messages {
			if msg.Seq != after+1 || seen[msg.Seq] {
				t.Fatalf("group seq %d after %d", msg.Seq, after)
			}
			seen[msg.Seq] = true
			after = msg.Seq
		}
		if !page.HasMore {
			if page.LastSeq != writers*perWriter || after != page.LastSeq {
				t.Fatalf("group ends at %d, last_seq %d", after, page.LastSeq)
			}
			break
		}
	}
	// The routes went with the flush; the gateways' next SetRoutes brings
	// them back, and compare-and-delete still works without the script
	// cache.
	uids := []string{"user0", "user1", "user2", "user3"}
	if got, err := cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: uids}); err != nil || len(got.Routes) != 0 {
		t.Fatalf("routes after the flush: %+v %v", got, err)
	}
	if _, err := cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: routesOf()}); err != nil {
		t.Fatal(err)
	}
	if got, err := cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: uids}); err != nil || len(got.Routes) != writers {
		t.Fatalf("routes set again: %+v %v", got, err)
	}
	if _, err := cli.DelRoutes(ctx, &dataproxy.DelRoutesReq{Routes: routesOf()[:1]}); err != nil {
		t.Fatal(err)
	}
	if got, err := cli.GetRoutes(ctx, &dataproxy.GetRoutesReq{Uids: uids}); err != nil || len(got.Routes) != writers-1 {
		t.Fatalf("routes after a delete: %+v %v", got, err)
	}
	// Redis holds routes and caches only: no sequence counter, nothing
	// that is not rebuilt.
	for _, k := range m.Keys() {
		ok := false
		for _, kind := range []string{"route:", "groute:", "ugroups:", "uconvs:", "lastseq:", "fill:"} {
			ok = ok || strings.HasPrefix(k, routes.DefaultPrefix+kind)
		}
		if !ok {
			t.Fatalf("unexpected Redis key %q", k)
		}
	}
}

// A call carrying more bytes than allowed is refused whole with TooLarge;
// an oversized message inside a call gets TooLarge in its result.
func TestOversizedOverKitex(t *testing.T) {
	st, err := store.OpenSQLite(store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "gochat.db"), Options: store.Options{MaxBody: 100}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli := serve(t, build(t, handler.Config{MaxRequestBytes: 1000}, st, redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()}), "", nil))
	item := func(cmid string, n int) *dataproxy.AppendItem {
		return &dataproxy.AppendItem{ConvId: ids.P2P("alice", "bob"), Sender: "alice", Recipient: "bob", ClientMsgId: cmid, Body: strings.Repeat("x", n)}
	}
	var big []*dataproxy.AppendItem
	for i := range 12 {
		big = append(big, item(fmt.Sprint(i), 90))
	}
	_, err = cli.AppendMessages(context.Background(), &dataproxy.AppendMessagesReq{Items: big})
	wantBizCode(t, err, errcode.TooLarge)
	resp, err := cli.AppendMessages(context.Background(), &dataproxy.AppendMessagesReq{Items: []*dataproxy.AppendItem{item("a", 101), item("b", 100)}})
	if err != nil || resp.Results[0].ErrorCode != int32(errcode.TooLarge) || resp.Results[1].Seq != 1 {
		t.Fatalf("per-message limit: %+v %v", resp, err)
	}
	// Unknown conversations and malformed ids are business errors too.
	_, err = cli.SyncMessages(context.Background(), &dataproxy.SyncMessagesReq{ConvId: ids.P2P("carol", "dave")})
	wantBizCode(t, err, errcode.ConvNotFound)
	for _, conv := range []string{"", "p:bob:alice", "p:a", "g:", "x:y", strings.Repeat("g", 300)} {
		_, err = cli.SyncMessages(context.Background(), &dataproxy.SyncMessagesReq{ConvId: conv})
		wantBizCode(t, err, errcode.BadField)
	}
	_, err = cli.ListConversations(context.Background(), &dataproxy.ListConversationsReq{Uid: "a b"})
	wantBizCode(t, err, errcode.BadField)
	_, err = cli.SyncMessages(context.Background(), &dataproxy.SyncMessagesReq{ConvId: ids.P2P("alice", "bob"), AfterSeq: -1})
	wantBizCode(t, err, errcode.BadField)
}
