//go:build linux

package wsload

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestHistogram(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/30 || d > c.want/30 {
			t.Fatalf("q%.2f = %v, want about %v", c.q, got, c.want)
		}
	}
	// Merging the sparse form of two halves gives the same answers.
	a, b := NewHistogram(), NewHistogram()
	for i := 1; i <= 1000; i++ {
		if i%2 == 0 {
			a.Add(time.Duration(i) * time.Millisecond)
		} else {
			b.Add(time.Duration(i) * time.Millisecond)
		}
	}
	m := FromSparse(a.Sparse())
	m.Merge(FromSparse(b.Sparse()))
	if m.Count() != 1000 || m.Quantile(0.5) != h.Quantile(0.5) || m.Max() != time.Second {
		t.Fatalf("merged: n %d p50 %v max %v", m.Count(), m.Quantile(0.5), m.Max())
	}
	for us := uint64(0); us < 1<<20; us = us*3/2 + 1 {
		if lb := lowerBound(bucketOf(us)); lb > us || us-lb > us/30+1 {
			t.Fatalf("%d µs lands in a bucket starting at %d", us, lb)
		}
	}
}

func TestSourcesAndGateways(t *testing.T) {
	srcs, err := ExpandSources("127.0.0.2-127.0.0.4, 127.0.1.9")
	if err != nil || strings.Join(srcs, ",") != "127.0.0.2,127.0.0.3,127.0.0.4,127.0.1.9" {
		t.Fatalf("%v %v", srcs, err)
	}
	for _, bad := range []string{"", "::1", "127.0.0.5-127.0.0.1", "x"} {
		if _, err := ExpandSources(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "gateways.txt")
	if err := os.WriteFile(path, []byte("# id ws admin pid\nbgw1 127.0.0.1:9100 127.0.0.1:9400 42\n\nbgw2 127.0.0.1:9101\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gs, err := ReadGatewaysFile(path)
	if err != nil || len(gs) != 2 || gs[0].PID != 42 || gs[0].Admin != "127.0.0.1:9400" || gs[1].Path != "/ws" {
		t.Fatalf("%+v %v", gs, err)
	}
	gs, err = ParseGatewaySpecs("a=127.0.0.1:1/7,b=127.0.0.1:2")
	if err != nil || len(gs) != 2 || gs[0].PID != 7 || gs[1].ID != "b" {
		t.Fatalf("%+v %v", gs, err)
	}
	if _, err := ParseGatewaySpecs("a=localhost:1"); err == nil {
		t.Fatal("a host name accepted (the tool dials IPv4 addresses)")
	}
	if id, ok := helloConnID([]byte(`{"type":"hello","uid":"u","conn":1732712345000001,"heartbeat_ms":1}`)); !ok || id != 1732712345000001 {
		t.Fatalf("conn id %d %v", id, ok)
	}
	if _, ok := helloConnID([]byte(`{"type":"msg","conn":1}`)); ok {
		t.Fatal("a push taken for hello")
	}
	var tb Table
	tb.Row("a", "bb")
	tb.Row(1, 22222)
	var sb strings.Builder
	tb.Print(&sb)
	if sb.String() != "| a | bb    |\n| - | ----- |\n| 1 | 22222 |\n" {
		t.Fatalf("table:\n%s", sb.String())
	}
}

// wsServer is a minimal WebSocket server: it upgrades any request, sends
// hello with a conn id, and pushes a text frame to every connection when
// push is called.
type wsServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	paths []string
}

func startServer(t *testing.T) *wsServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wsServer{ln: ln}
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
	})
	go func() {
		for id := 1; ; id++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, id int) {
				var path string
				u := ws.Upgrader{OnRequest: func(uri []byte) error { path = string(uri); return nil }}
				if _, err := u.Upgrade(c); err != nil {
					_ = c.Close()
					return
				}
				_ = wsutil.WriteServerText(c, []byte(fmt.Sprintf(`{"type":"hello","uid":"u","conn":%d}`, 1000+id)))
				s.mu.Lock()
				s.conns = append(s.conns, c)
				s.paths = append(s.paths, path)
				s.mu.Unlock()
				_, _ = io.Copy(io.Discard, c) // heartbeats
			}(c, id)
		}
	}()
	return s
}

func (s *wsServer) push(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if err := wsutil.WriteServerText(c, []byte(`{"type":"msg","body":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
}

// A worker opens its connections, counts pushes after a mark and lists
// its targets, driven exactly as a Fleet drives it.
func TestWorker(t *testing.T) {
	srv := startServer(t)
	const n = 20
	plan := Plan{Gateways: []Gateway{{ID: "g", Addr: srv.ln.Addr().String(), Path: "/ws"}},
		Sources: []string{"127.0.0.2", "127.0.0.3"}, Count: n, UIDPrefix: "t-", Device: "d",
		Secret: "s", TokenTTL: time.Hour, Concurrency: 4, Report: 20 * time.Millisecond}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- RunWorker(inR, outW); _ = outW.Close() }()
	enc := json.NewEncoder(inW)
	if err := enc.Encode(plan); err != nil {
		t.Fatal(err)
	}
	reports := make(chan Report, 100)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r Report
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				reports <- r
			}
		}
		close(reports)
	}()
	wait := func(what string, ok func(Report) bool) Report {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r, open := <-reports:
				if !open {
					t.Fatalf("worker stopped before %s", what)
				}
				if ok(r) {
					return r
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	r := wait("connections", func(r Report) bool { return r.Done })
	if r.Connected != n || r.Open != n || r.SetupErrors+r.DialErrors != 0 {
		t.Fatalf("report %+v", r)
	}
	_ = enc.Encode(command{Cmd: "mark", Seq: 1, NS: time.Now().UnixNano()})
	wait("mark", func(r Report) bool { return r.Mark == 1 })
	srv.push(t)
	srv.push(t)
	r = wait("pushes", func(r Report) bool { return r.MarkFrames == 2*n })
	if r.FirstNS == 0 || r.LastNS < r.FirstNS || FromSparse(r.Push).Count() != 2*n {
		t.Fatalf("push report %+v", r)
	}
	path := filepath.Join(t.TempDir(), "targets")
	_ = enc.Encode(command{Cmd: "targets", Seq: 2, Path: path})
	wait("targets", func(r Report) bool { return r.Targets == 2 })
	b, err := os.ReadFile(path)
	if err != nil || len(strings.Split(strings.TrimSpace(string(b)), "\n")) != n || !strings.HasPrefix(string(b), "0 t-") {
		t.Fatalf("targets %q %v", b, err)
	}
	srv.mu.Lock()
	if !strings.HasPrefix(srv.paths[0], "/ws?token=v1.") {
		t.Fatalf("request %q carries no token", srv.paths[0])
	}
	srv.mu.Unlock()
	_ = inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Quantile gives the lower bound of the value's bucket: never above the
// exact value, at most 1/32 below it.
func TestHistogramQuantileIsLowerBound(t *testing.T) {
	for _, us := range []int64{1, 63, 64, 65, 1000, 1063, 99_999, 5_000_000} {
		h := NewHistogram()
		h.Add(time.Duration(us) * time.Microsecond)
		h.Add(time.Hour) // so Max does not clamp the first value
		got := h.Quantile(0.5)
		exact := time.Duration(us) * time.Microsecond
		if got > exact || exact-got > exact/32 {
			t.Errorf("%d µs: p50 %v", us, got)
		}
	}
}
