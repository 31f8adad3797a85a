package session

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// readFrames reads server frames from c until it has n or the connection
// ends, and returns their payloads.
func readFrames(c net.Conn, n int) [][]byte {
	br := bufio.NewReader(c)
	var out [][]byte
	for len(out) < n {
		f, err := ws.ReadFrame(br)
		if err != nil {
			return out
		}
		out = append(out, f.Payload)
	}
	return out
}

// A batch writes to every session of a chunk without waiting for any one
// of them: a client that does not read fills its socket, moves to a writer
// of its own and is dropped at the write timeout, while the others in the
// same chunk get every frame, in order, long before that.
func TestBatchSlowClientDoesNotStallChunk(t *testing.T) {
	const n, rounds = 8, 40
	l := startLoop(t, n, false, 1024)
	type result struct {
		i      int
		frames [][]byte
	}
	got := make(chan result, n)
	for i := 1; i < n; i++ {
		go func() { got <- result{i, readFrames(l.clients[i], rounds)} }()
	}
	big := wsframe.Frame(ws.OpBinary, bytes.Repeat([]byte("z"), 512<<10))
	start := time.Now()
	for r := 0; r < rounds; r++ {
		b := l.env.Batch()
		small := wsframe.Frame(ws.OpText, fmt.Appendf(nil, "m%d", r))
		for i, s := range l.h.sessions {
			f := small
			if i == 0 {
				f = big // client 0 never reads: its socket fills at once
			}
			_ = b.Send(s, f)
		}
		b.Flush()
	}
	for k := 1; k < n; k++ {
		select {
		case res := <-got:
			if len(res.frames) != rounds {
				t.Fatalf("client %d got %d frames, want %d", res.i, len(res.frames), rounds)
			}
			for r, p := range res.frames {
				if string(p) != fmt.Sprintf("m%d", r) {
					t.Fatalf("client %d frame %d is %q", res.i, r, p)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reading clients did not get their frames")
		}
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Logf("the reading clients took %v (the write timeout is 2 s)", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.obs.slow.Load() == 0 || l.h.sessions[0].State() != StateClosed {
		if time.Now().After(deadline) {
			t.Fatalf("client that does not read not dropped: slow %d, state %v", l.obs.slow.Load(), l.h.sessions[0].State())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Frames bigger than the socket takes at once are split between a direct
// write and netpoll's buffer; frames queued meanwhile must follow in order.
// The client reads slowly, in small pieces, so writes are partial often.
func TestPartialWritesKeepOrder(t *testing.T) {
	l := startLoop(t, 1, false, 4096)
	s, c := l.h.sessions[0], l.clients[0]
	var want bytes.Buffer
	var frames [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		size := 10 + rng.IntN(40<<10)
		if i%7 == 0 {
			size = 200 << 10
		}
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		f := wsframe.Frame(ws.OpBinary, p)
		frames = append(frames, f)
		want.Write(f)
	}
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 7000)
		for b.Len() < want.Len() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			b.Write(buf[:k])
			if b.Len()%5 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		got <- b.Bytes()
	}()
	for i, f := range frames {
		if i%3 == 0 {
			if err := s.Send(f); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			continue
		}
		b := l.env.Batch()
		if err := b.Send(s, f); err != nil {
			t.Fatalf("batch send %d: %v", i, err)
		}
		b.Flush()
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("client got %d bytes, want %d; streams differ", len(b), want.Len())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("client did not get everything")
	}
}

// Sends, kills and clients going away at the same time: no write reaches
// a closed connection, nothing deadlocks (run with -race).
func TestKillWhileWriting(t *testing.T) {
	const n = 40
	l := startLoop(t, n, true, 64)
	frame := wsframe.Frame(ws.OpText, bytes.Repeat([]byte("k"), 300))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := l.env.Batch()
				for _, s := range l.h.sessions {
					_ = b.Send(s, frame)
				}
				b.Flush()
				_ = l.h.sessions[g].Send(frame)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	for i, s := range l.h.sessions {
		switch i % 3 {
		case 0:
			s.Kill()
		case 1:
			_ = l.clients[i].Close()
		default:
			s.CloseWith(1000, "bye")
		}
		if i%5 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for l.h.closed.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions closed", l.h.closed.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range l.h.sessions {
		if err := s.Send(frame); err != ErrClosed {
			t.Fatalf("send to a closed session: %v", err)
		}
	}
}
