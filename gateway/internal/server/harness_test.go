package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/gateway/internal/metrics"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
)

func TestMain(m *testing.M) {
	if err := TuneNetpoll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var testSecret = []byte("server-test-secret")

// fakeLogic records route calls and answers Sync from canned data.
type fakeLogic struct {
	mu          sync.Mutex
	connects    []*logic.ConnectReq
	disconnects []*logic.DisconnectReq
	syncs       []*logic.SyncReq
	convLimits  []int32
	// gate, when set, holds Connect calls until it is closed.
	gate       chan struct{}
	connectErr error
	// refuse: new connections of this device id are refused by the
	// login policy in favour of a (made-up) "phone-b".
	refuse string
	// ClientCall: calls made; callReply, when set, is the reply frame,
	// else a group_info-like reply naming the request's group; callErr
	// fails the call.
	calls     []*logic.ClientCallReq
	callReply []byte
	callErr   error
	// Cursors: calls made; cursors answers them; cursorErr fails them;
	// cursorGate, when set, holds calls until it is closed.
	cursorCalls []*logic.CursorsReq
	cursors     map[string]int64
	cursorErr   error
	cursorGate  chan struct{}
}

func (f *fakeLogic) Connect(ctx context.Context, req *logic.ConnectReq) (*logic.ConnectResp, error) {
	f.mu.Lock()
	gate, cerr := f.gate, f.connectErr
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if cerr != nil {
		return nil, cerr
	}
	f.mu.Lock()
	f.connects = append(f.connects, req)
	refuse := f.refuse
	f.mu.Unlock()
	resp := &logic.ConnectResp{}
	for _, c := range req.Conns {
		if c.Device == refuse && refuse != "" && !req.Refresh {
			resp.Refused = append(resp.Refused, &logic.RefusedConn{ConnId: c.ConnId, Reason: "replaced", Device: "phone-b"})
		}
	}
	return resp, nil
}

func (f *fakeLogic) Disconnect(_ context.Context, req *logic.DisconnectReq) (*logic.DisconnectResp, error) {
	f.mu.Lock()
	f.disconnects = append(f.disconnects, req)
	f.mu.Unlock()
	return &logic.DisconnectResp{}, nil
}

func (f *fakeLogic) Sync(_ context.Context, req *logic.SyncReq) (*logic.SyncResp, error) {
	f.mu.Lock()
	f.syncs = append(f.syncs, req)
	f.mu.Unlock()
	return &logic.SyncResp{
		Messages: []*common.Message{
			{ConvId: req.ConvId, Seq: req.AfterSeq + 1, Sender: "bob", Recipient: req.Uid, ClientMsgId: "c1", ContentType: "text", Body: "hi", CreatedAtMs: 1000},
		},
		HasMore: false,
		LastSeq: req.AfterSeq + 1,
	}, nil
}

func (f *fakeLogic) Conversations(_ context.Context, req *logic.ConversationsReq) (*logic.ConversationsResp, error) {
	f.mu.Lock()
	f.convLimits = append(f.convLimits, req.Limit)
	f.mu.Unlock()
	return &logic.ConversationsResp{Items: []*common.Conversation{{ConvId: "p:alice:bob", Kind: "p2p", Peer: "bob", LastSeq: 3, UpdatedAtMs: 5}}}, nil
}

func (f *fakeLogic) ClientCall(_ context.Context, req *logic.ClientCallReq) (*logic.ClientCallResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.callErr != nil {
		return nil, f.callErr
	}
	if f.callReply != nil {
		return &logic.ClientCallResp{Frame: f.callReply}, nil
	}
	var in protocol.GroupReq
	if err := json.Unmarshal(req.Frame, &in); err != nil {
		return nil, errcode.Biz(errcode.BadJSON, "%v", err)
	}
	out, _ := json.Marshal(protocol.GroupResp{Type: in.Type, RID: in.RID, Group: &protocol.Group{ID: in.Group, Owner: req.Uid}})
	return &logic.ClientCallResp{Frame: out}, nil
}

func (f *fakeLogic) clientCalls() []*logic.ClientCallReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*logic.ClientCallReq(nil), f.calls...)
}

func (f *fakeLogic) Cursors(ctx context.Context, req *logic.CursorsReq) (*logic.CursorsResp, error) {
	f.mu.Lock()
	gate := f.cursorGate
	f.cursorCalls = append(f.cursorCalls, req)
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cursorErr != nil {
		return nil, f.cursorErr
	}
	out := map[string]int64{}
	for _, uid := range req.Uids {
		if c, ok := f.cursors[uid]; ok {
			out[uid] = c
		}
	}
	return &logic.CursorsResp{Cursors: out}, nil
}

func (f *fakeLogic) cursorRequests() []*logic.CursorsReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*logic.CursorsReq(nil), f.cursorCalls...)
}

// connected reports whether a Connect call carried conn id.
func (f *fakeLogic) connected(id int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.connects {
		for _, c := range r.Conns {
			if c.ConnId == id {
				return true
			}
		}
	}
	return false
}

func (f *fakeLogic) disconnected(id int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.disconnects {
		for _, c := range r.Conns {
			if c.ConnId == id {
				return true
			}
		}
	}
	return false
}

// fakeUp records upstream records.
type fakeUp struct {
	mu   sync.Mutex
	recs []*events.UpRecord
	fail error
}

func (f *fakeUp) Send(rec *events.UpRecord, done func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.recs = append(f.recs, rec)
	go done(nil)
	return nil
}

func (f *fakeUp) records() []*events.UpRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*events.UpRecord(nil), f.recs...)
}

type env struct {
	srv   *Server
	logic *fakeLogic
	up    *fakeUp
	m     *metrics.Metrics
	addr  string
}

func start(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	return startDeps(t, tweak, nil)
}

// startDeps is start with a hook to change the dependencies (a clock).
func startDeps(t testing.TB, tweak func(*Config), deps func(*Deps)) *env {
	t.Helper()
	cfg := Config{ID: "gwtest", Listen: "127.0.0.1:0", RouteRefresh: -1}
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{logic: &fakeLogic{}, up: &fakeUp{}, m: metrics.New(prometheus.NewRegistry())}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d := Deps{Logic: e.logic, Up: e.up, Verifier: v, Metrics: e.m, Log: log}
	if deps != nil {
		deps(&d)
	}
	e.srv, err = New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	e.addr = e.srv.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
	})
	return e
}

func token(t testing.TB, uid, device string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Sign(testSecret, auth.Claims{UID: uid, Device: device, Expires: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is a real WebSocket client (gobwas/ws on the client side).
type client struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
}

func dial(t *testing.T, addr, tok string) *client {
	t.Helper()
	c, _ := dialProtocols(t, addr, tok)
	return c
}

// connect dials and waits for hello.
func connect(t *testing.T, e *env, uid string) (*client, hello) {
	t.Helper()
	c := dial(t, e.addr, token(t, uid, "phone", time.Hour))
	var h hello
	c.readJSON(&h)
	if h.Type != "hello" || h.UID != uid {
		t.Fatalf("first frame %+v, want hello for %s", h, uid)
	}
	return c, h
}

type hello struct {
	Type        string `json:"type"`
	UID         string `json:"uid"`
	Device      string `json:"device"`
	ConnID      int64  `json:"conn"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	MaxBody     int    `json:"max_body"`
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) writeFrame(f ws.Frame) {
	c.t.Helper()
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

// readFrame reads the next server frame within d.
func (c *client) readFrame(d time.Duration) (ws.Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.conn.SetReadDeadline(time.Time{}) }()
	return ws.ReadFrame(c.r)
}

// readJSON reads the next text frame into v.
func (c *client) readJSON(v any) {
	c.t.Helper()
	f, err := c.readFrame(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if f.Header.OpCode != ws.OpText {
		c.t.Fatalf("got opcode %d (payload %q), want text", f.Header.OpCode, f.Payload)
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		c.t.Fatalf("decode %q: %v", f.Payload, err)
	}
}

// expectClose reads until a close frame and checks its code.
func (c *client) expectClose(code ws.StatusCode) {
	c.t.Helper()
	for {
		f, err := c.readFrame(5 * time.Second)
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		if len(f.Payload) < 2 {
			c.t.Fatalf("close frame without code")
		}
		if got := ws.StatusCode(binary.BigEndian.Uint16(f.Payload)); got != code {
			c.t.Fatalf("close code %d (%q), want %d", got, f.Payload[2:], code)
		}
		return
	}
}

// expectNothing checks that no frame arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	f, err := c.readFrame(d)
	if err == nil {
		c.t.Fatalf("unexpected frame op %d %q", f.Header.OpCode, f.Payload)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("read: %v", err)
	}
}

type errFrame struct {
	Type   string `json:"type"`
	Code   int32  `json:"code"`
	Reason string `json:"reason"`
	CMID   string `json:"cmid"`
	RID    string `json:"rid"`
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawRequest sends an HTTP request over plain TCP and returns the response
// and whether the server then closed the connection.
func rawRequest(t *testing.T, addr, req string) (*bufio.Reader, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(conn), conn
}
