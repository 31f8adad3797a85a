package session

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/workpool"
	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// loopHandler upgrades every connection at once and counts messages.
type loopHandler struct {
	mu       sync.Mutex
	sessions []*Session
	msgs     atomic.Int64
	closed   atomic.Int64
}

func (h *loopHandler) Handshake(s *Session, _ []byte) {
	s.Upgraded("u"+strconv.FormatInt(s.ConnID(), 10), "d")
	_ = s.Send([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
	s.advanceFrom(StateRegistering, StateOpen)
	h.mu.Lock()
	h.sessions = append(h.sessions, s)
	h.mu.Unlock()
}
func (h *loopHandler) HeadTooLarge(s *Session)      { s.Kill() }
func (h *loopHandler) Message(_ *Session, _ []byte) { h.msgs.Add(1) }
func (h *loopHandler) Closed(*Session)              { h.closed.Add(1) }

type countObs struct{ in, out, slow atomic.Int64 }

func (o *countObs) FrameIn()        { o.in.Add(1) }
func (o *countObs) FramesOut(n int) { o.out.Add(int64(n)) }
func (o *countObs) SlowClient()     { o.slow.Add(1) }
func (o *countObs) Flooded()        {}

// loop is a netpoll server of sessions plus n plain TCP clients connected
// to it, upgraded and drained (or not) by goroutines.
type loop struct {
	h       *loopHandler
	obs     *countObs
	env     *Env
	clients []net.Conn
	stop    func()
}

func startLoop(tb testing.TB, n int, drain bool, queue int) *loop {
	tb.Helper()
	l := &loop{h: &loopHandler{}, obs: &countObs{}}
	writers := workpool.NewPool(workpool.Config{Core: 4 * runtime.GOMAXPROCS(0), Max: 256})
	l.env = &Env{Handler: l.h, Obs: l.obs, Writers: writers, MaxFrame: 1 << 16, MaxHead: 4096,
		WriteQueue: queue, SlowClose: wsframe.CloseFrame(ws.StatusPolicyViolation, "slow"),
		Now: func() int64 { return time.Now().UnixNano() }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var nextID atomic.Int64
	el, err := netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		s, _ := FromContext(ctx)
		return s.OnReadable()
	}, netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
		s := New(l.env, c, nextID.Add(1))
		_ = c.AddCloseCallback(s.OnClosed)
		return s
	}), netpoll.WithWriteTimeout(2*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = el.Serve(ln) }()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\n\r\n"); err != nil {
			tb.Fatal(err)
		}
		br := make([]byte, 64)
		if _, err := io.ReadAtLeast(c, br, len("HTTP/1.1 101 Switching Protocols\r\n\r\n")); err != nil {
			tb.Fatal(err)
		}
		l.clients = append(l.clients, c)
		if drain {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}
	for l.h.count() < n {
		time.Sleep(time.Millisecond)
	}
	l.stop = func() {
		for _, c := range l.clients {
			_ = c.Close()
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = el.Shutdown(ctx)
		writers.Close()
	}
	tb.Cleanup(l.stop)
	return l
}

func (h *loopHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// mallocs returns the process's heap allocation count.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkPush measures the push path of one encoded frame to 1,000 real
// connections: Send queues the shared bytes, a writer copies each batch
// into netpoll's output buffer and flushes it with one sendmsg. An op is
// one frame delivered; allocs/frame counts every allocation in the process
// (server and the draining clients) while frames flow, so 0 means the
// steady-state push path allocates nothing.
func BenchmarkPush(b *testing.B) {
	const conns = 1000
	l := startLoop(b, conns, true, 256)
	frame := wsframe.Frame(ws.OpText, bytes.Repeat([]byte("p"), 100))
	// One round is one message to every connection, waited for before the
	// next, so each frame is its own flush (no batching across rounds).
	push := func(rounds int) {
		for r := 0; r < rounds; r++ {
			base := l.obs.out.Load()
			for _, s := range l.h.sessions {
				_ = s.Send(frame)
			}
			for l.obs.out.Load() < base+conns {
				runtime.Gosched()
			}
		}
	}
	push(5) // warm up buffers and pools
	b.ReportAllocs()
	b.ResetTimer()
	m0 := mallocs()
	rounds := (b.N + conns - 1) / conns
	push(rounds)
	b.StopTimer()
	frames := float64(rounds * conns)
	b.ReportMetric(float64(mallocs()-m0)/frames, "allocs/frame")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
}

// BenchmarkRawWrite is the floor for BenchmarkPush: the same frame written
// to the same kind of connections with a plain write(2) per connection, no
// GoChat or netpoll code at all. On a loopback box both are dominated by
// the kernel's TCP work (on the server's side and, for the receive, charged
// to the sender), so the difference between the two is the cost of the
// push path itself.
func BenchmarkRawWrite(b *testing.B) {
	const conns = 1000
	l := startLoop(b, conns, true, 256)
	frame := wsframe.Frame(ws.OpText, bytes.Repeat([]byte("p"), 100))
	var fds []int
	for _, s := range l.h.sessions {
		fds = append(fds, s.conn.(interface{ Fd() int }).Fd())
	}
	b.ResetTimer()
	rounds := (b.N + conns - 1) / conns
	for r := 0; r < rounds; r++ {
		for _, fd := range fds {
			if _, err := syscall.Write(fd, frame); err != nil {
				b.Fatal(err)
			}
		}
		runtime.Gosched() // let the readers drain
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rounds*conns), "ns/frame")
}

// BenchmarkReadFrames measures client frames arriving on real connections
// and going through OnReadable: header parsed from netpoll's buffer, payload
// unmasked in place, UTF-8 checked and handed to the handler. allocs/frame
// counts every allocation in the process while frames flow.
func BenchmarkReadFrames(b *testing.B) {
	const conns = 100
	l := startLoop(b, conns, false, 256)
	payload := []byte(`{"type":"send","cmid":"m1","to":"bob","body":"a message of some fifty bytes, give or take"}`)
	var batch bytes.Buffer
	const perWrite = 20
	for i := 0; i < perWrite; i++ {
		f := ws.MaskFrameWith(ws.NewTextFrame(append([]byte(nil), payload...)), [4]byte{1, 2, 3, 4})
		_ = ws.WriteFrame(&batch, f)
	}
	send := func(writes int) {
		base := l.h.msgs.Load()
		for i := 0; i < writes; i++ {
			if _, err := l.clients[i%conns].Write(batch.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
		for l.h.msgs.Load() < base+int64(writes*perWrite) {
			runtime.Gosched()
		}
	}
	send(conns * 5)
	b.ReportAllocs()
	b.ResetTimer()
	m0 := mallocs()
	writes := (b.N + perWrite - 1) / perWrite
	send(writes)
	b.StopTimer()
	frames := float64(writes * perWrite)
	b.ReportMetric(float64(mallocs()-m0)/frames, "allocs/frame")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
}
