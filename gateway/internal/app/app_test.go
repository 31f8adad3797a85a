package app

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/twmb/franz-go/pkg/kfake"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/gochat-im/gochat/gateway/internal/server"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/discovery"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/ports"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

// This test runs the whole gateway as cmd/gateway does, against an
// embedded etcd, an in-process Kafka broker (kfake) with real librdkafka
// clients, and a stub logic service reached over Kitex through etcd.

// taken holds the ports freePort has handed out, so none is given twice.
var (
	takenMu sync.Mutex
	taken   = map[int]bool{}
)

// freePort picks a free port below the kernel's ephemeral range, where no
// outgoing connection can take it before the server binds it.
func freePort(t *testing.T) int {
	t.Helper()
	takenMu.Lock()
	defer takenMu.Unlock()
	port, err := ports.Free("127.0.0.1", taken)
	if err != nil {
		t.Fatal(err)
	}
	taken[port] = true
	return port
}

func startEtcd(t *testing.T) string {
	t.Helper()
	c := embed.NewConfig()
	c.Name = "gw-test"
	c.Dir = t.TempDir()
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	c.ListenClientUrls, c.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	c.ListenPeerUrls, c.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	c.InitialCluster = c.Name + "=" + peer.String()
	c.LogLevel = "error"
	c.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(c)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	t.Cleanup(e.Close)
	return client.Host
}

// stubLogic accepts every route and records the calls.
type stubLogic struct {
	logic.Logic // unused methods panic
	mu          sync.Mutex
	connected   map[int64]bool
	disconn     map[int64]bool
}

func (s *stubLogic) Connect(_ context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range req.Conns {
		s.connected[c.ConnId] = true
	}
	return &logic.ConnectResp{}, nil
}

func (s *stubLogic) Disconnect(_ context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range req.Conns {
		s.disconn[c.ConnId] = true
	}
	return &logic.DisconnectResp{}, nil
}

func (s *stubLogic) wasDisconnected(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disconn[id]
}

func startLogic(t *testing.T, etcd string) *stubLogic {
	t.Helper()
	opts, err := rpcx.ServerOptions(rpcx.ServerConfig{
		Service: rpcx.LogicService, Listen: "127.0.0.1:" + strconv.Itoa(freePort(t)), Etcd: []string{etcd},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &stubLogic{connected: map[int64]bool{}, disconn: map[int64]bool{}}
	svr := logicsvc.NewServer(h, opts...)
	go func() { _ = svr.Run() }()
	t.Cleanup(func() { _ = svr.Stop() })
	return h
}

func TestGatewayEndToEnd(t *testing.T) {
	if err := server.TuneNetpoll(); err != nil {
		t.Fatal(err)
	}
	etcd := startEtcd(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	// log_level 4 keeps librdkafka to warnings and errors.
	kcommon := kafkax.Common{Brokers: kc.ListenAddrs()[0], Extra: kafka.ConfigMap{"log_level": 4}}
	stub := startLogic(t, etcd)

	secret := []byte("e2e-secret")
	id := "gw-e2e-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	a, err := New(Config{
		Server:         server.Config{ID: id, Listen: "127.0.0.1:0", RouteRefresh: -1},
		TokenSecrets:   [][]byte{[]byte("new-secret"), secret},
		Etcd:           []string{etcd},
		Kafka:          kcommon,
		DownPartitions: 2,
		UpPartitions:   3,
		RegistryTTL:    5 * time.Second,
		AdminListen:    "127.0.0.1:0",
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	shut := false
	t.Cleanup(func() {
		if !shut {
			_ = a.Shutdown(context.Background())
		}
	})

	// The gateway, the first service on this broker, created the upstream
	// topic with its -up-partitions and its own topic with -down-partitions.
	adm, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": kcommon.Brokers, "log_level": 4})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int{kafkax.TopicUp: 3, kafkax.DownTopic(id): 2} {
		md, err := adm.GetMetadata(&topic, false, 5000)
		if err != nil {
			t.Fatalf("metadata of %s: %v", topic, err)
		}
		if got := len(md.Topics[topic].Partitions); got != want {
			t.Errorf("topic %s has %d partitions, want %d", topic, got, want)
		}
	}
	adm.Close()

	// The gateway is registered in etcd with its downstream topic.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, discovery.GatewayPrefix+id)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("registration: %v %v", resp, err)
	}
	var g discovery.Gateway
	_ = json.Unmarshal(resp.Kvs[0].Value, &g)
	if g.Topic != kafkax.DownTopic(id) || g.Addr != a.Addr().String() {
		t.Fatalf("registered %+v", g)
	}
	// ... announcing that it takes batch records, with its topic's
	// partition count (what logic needs to pin a batch to a partition).
	if !g.Batches || g.DownPartitions != a.cfg.DownPartitions {
		t.Fatalf("registered %+v, want batches and %d partitions", g, a.cfg.DownPartitions)
	}

	// A client connects with a token signed by the older secret (rotation)
	// and gets hello once logic (over Kitex, found through etcd) has the
	// route.
	tok, _ := auth.Sign(secret, auth.Claims{UID: "alice", Device: "web", Expires: time.Now().Add(time.Hour)})
	conn, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(ctx, "ws://"+a.Addr().String()+"/ws?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	read := func(d time.Duration) (ws.Frame, error) {
		_ = conn.SetReadDeadline(time.Now().Add(d))
		return ws.ReadFrame(r)
	}
	f, err := read(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var hello struct {
		Type   string `json:"type"`
		ConnID int64  `json:"conn"`
	}
	if err := json.Unmarshal(f.Payload, &hello); err != nil || hello.Type != "hello" {
		t.Fatalf("first frame %q", f.Payload)
	}

	// A send reaches the upstream topic keyed by conversation id.
	up, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": kcommon.Brokers, "group.id": "t-" + id,
		"auto.offset.reset": "earliest", "heartbeat.interval.ms": 300})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if err := up.SubscribeTopics([]string{kafkax.TopicUp}, nil); err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientText(conn, []byte(`{"type":"send","cmid":"e2e-1","to":"bob","body":"hi bob"}`)); err != nil {
		t.Fatal(err)
	}
	var rec events.UpRecord
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no upstream record")
		}
		m, err := up.ReadMessage(500 * time.Millisecond)
		if err != nil {
			continue
		}
		if err := kafkax.Decode(m.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != "p:alice:bob" || rec.ConvId != "p:alice:bob" || rec.Sender != "alice" || rec.ConnId != hello.ConnID || rec.GatewayId != id {
			t.Fatalf("upstream key %q record %+v", m.Key, rec)
		}
		break
	}

	// A downstream record reaches the client. The gateway's consumer starts
	// at the latest offset once it has its partitions, so keep producing
	// until one arrives.
	p, err := kafkax.NewProducer(kcommon, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	down := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_ACK,
		Targets: []*events.Target{{Uid: "alice", ConnId: hello.ConnID}},
		Ack:     &events.Ack{ClientMsgId: "e2e-1", ConvId: "p:alice:bob", Seq: 1, CreatedAtMs: 1}})
	got := false
	for i := 0; i < 40 && !got; i++ {
		if err := p.SendAll(ctx, []kafkax.Msg{{Topic: kafkax.DownTopic(id), Key: []byte("alice"), Value: down}}); err != nil {
			t.Fatal(err)
		}
		f, err := read(500 * time.Millisecond)
		if err == nil {
			var ack struct {
				Type string `json:"type"`
				CMID string `json:"cmid"`
			}
			_ = json.Unmarshal(f.Payload, &ack)
			if ack.Type != "ack" || ack.CMID != "e2e-1" {
				t.Fatalf("downstream frame %q", f.Payload)
			}
			got = true
		}
	}
	if !got {
		t.Fatal("downstream record never reached the client")
	}
	for {
		// Drain acks of the extra records produced above.
		if _, err := read(300 * time.Millisecond); err != nil {
			break
		}
	}

	// Shutdown: the client gets 1001, logic a Disconnect, etcd loses the key.
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(sctx) }()
	shut = true
	for {
		f, err := read(10 * time.Second)
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if code := binary.BigEndian.Uint16(f.Payload); code != 1001 {
				t.Fatalf("close code %d", code)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !stub.wasDisconnected(hello.ConnID) {
		t.Fatal("no Disconnect at shutdown")
	}
	resp, err = cli.Get(context.Background(), discovery.GatewayPrefix+id)
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("registration left in etcd: %v %v", resp.Kvs, err)
	}
}
