package session

import (
	"bufio"
	"bytes"
	"encoding/binary"
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
	// Everything was taken: the byte count of what waits (queue and
	// backlog) is back to 0, not left over from partial writes.
	waitIdle(t, s)
}

// waitIdle waits until s's writer has given up the queue with nothing
// waiting and its byte count back to 0 (what the client has not taken).
func waitIdle(t *testing.T, s *Session) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.wmu.Lock()
		n, q, sched := s.wbytes, len(s.wq), s.scheduled
		s.wmu.Unlock()
		if n == 0 && q == 0 && !sched {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer not idle: %d bytes counted, %d frames queued, scheduled %v", n, q, sched)
		}
		time.Sleep(time.Millisecond)
	}
}

// indexed is a binary frame of size bytes whose payload starts with i.
func indexed(i, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint32(p, uint32(i))
	return wsframe.Frame(ws.OpBinary, p)
}

// readIndexed reads frames from c until a close frame (or an error) and
// returns how many data frames came and the close code (0 if none); err
// says a frame was out of order (they must be 0, 1, 2, ...).
func readIndexed(c net.Conn) (n int, code uint16, err error) {
	br := bufio.NewReader(c)
	for ; ; n++ {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, rerr := ws.ReadFrame(br)
		if rerr != nil {
			return n, 0, nil
		}
		if f.Header.OpCode == ws.OpClose {
			return n, binary.BigEndian.Uint16(f.Payload), nil
		}
		if got := binary.BigEndian.Uint32(f.Payload); got != uint32(n) {
			return n, 0, fmt.Errorf("frame %d carries index %d: out of order", n, got)
		}
	}
}

// One Batch queues far more frames to a session than WriteQueue before it
// is flushed (its writer has not started): the queue is at its bound, but
// the socket takes everything, so the queuing goroutine writes the queue
// itself each time it fills. Every frame is accepted and arrives in order;
// the client is not counted slow; the byte count returns to 0.
func TestBatchOverQueueWritesAhead(t *testing.T) {
	l := startLoop(t, 1, false, 32)
	s, c := l.h.sessions[0], l.clients[0]
	const n = 1000
	b := l.env.Batch()
	for i := 0; i < n; i++ {
		if err := b.Send(s, indexed(i, 8)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	b.Flush()
	got := readFrames(c, n)
	if len(got) != n {
		t.Fatalf("client got %d of %d frames", len(got), n)
	}
	for i, p := range got {
		if binary.BigEndian.Uint32(p) != uint32(i) {
			t.Fatalf("frame %d carries index %d", i, binary.BigEndian.Uint32(p))
		}
	}
	if k := l.obs.slow.Load(); k != 0 {
		t.Fatalf("%d slow clients counted", k)
	}
	waitIdle(t, s)
}

// A client that does not read, sent 128 KiB frames through one Batch with
// a 32-frame queue: writing ahead fills its socket and leaves a backlog
// for the writer (which has not started) to flush; the queue then fills
// again behind that backlog, and that is too slow: ErrSlow, long before
// every frame is accepted. When the client reads, it gets the frames that
// were written (the backlog flushed by the writer), in order, then 1008;
// the frames that were still queued are dropped.
func TestWriteAheadBacklogThenSlow(t *testing.T) {
	l := startLoop(t, 1, false, 32)
	s, c := l.h.sessions[0], l.clients[0]
	const limit = 400 // 50 MiB: more than any socket buffers take
	b := l.env.Batch()
	accepted := 0
	for ; accepted < limit; accepted++ {
		if err := b.Send(s, indexed(accepted, 128<<10)); err != nil {
			if err != ErrSlow {
				t.Fatalf("frame %d: %v, want ErrSlow", accepted, err)
			}
			break
		}
	}
	b.Flush()
	if accepted == limit {
		t.Fatalf("all %d frames accepted for a client that does not read", limit)
	}
	if l.obs.slow.Load() != 1 {
		t.Fatalf("%d slow clients counted, want 1", l.obs.slow.Load())
	}
	n, code, err := readIndexed(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d frames, the client got %d then close %d", accepted, n, code)
	if code != uint16(ws.StatusPolicyViolation) {
		t.Fatalf("close code %d, want 1008", code)
	}
	if n < 32 || n > accepted {
		t.Fatalf("client got %d frames; want the %d+ written ahead, at most the %d accepted", n, 32, accepted)
	}
}

// The byte bound: a client that does not read, sent 64 KiB frames one by
// one with a 1 MiB bound and a frame bound far away. Once its socket is
// backed up, what waits for it (queue and backlog) cannot pass the bound
// by more than one frame: the next Send is ErrSlow, what was queued is
// dropped, and the client, reading at last, gets what was written in
// order and then 1008.
func TestWriteQueueBytesSlowReader(t *testing.T) {
	l := startLoop(t, 1, false, 1<<16)
	l.env.WriteQueueBytes = 1 << 20 // before anything is queued
	s, c := l.h.sessions[0], l.clients[0]
	const limit, size = 800, 64 << 10 // 50 MiB
	accepted := 0
	for ; accepted < limit; accepted++ {
		s.wmu.Lock()
		held := s.wbytes
		s.wmu.Unlock()
		if held > 1<<20+size+64 {
			t.Fatalf("%d bytes wait for the client, bound 1 MiB", held)
		}
		if err := s.Send(indexed(accepted, size)); err != nil {
			if err != ErrSlow {
				t.Fatalf("frame %d: %v, want ErrSlow", accepted, err)
			}
			break
		}
	}
	if accepted == limit {
		t.Fatalf("all %d frames accepted for a client that does not read", limit)
	}
	n, code, err := readIndexed(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d frames, the client got %d then close %d", accepted, n, code)
	if code != uint16(ws.StatusPolicyViolation) || n > accepted {
		t.Fatalf("client got %d frames (of %d accepted) and close %d, want 1008", n, accepted, code)
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

// Writing ahead races the queue's own writers (chunk tasks of Batches
// flushed every 50 frames, Run tasks of plain Sends) many times over: the
// client still gets every frame once, in the order queued, and is never
// judged slow (it reads all along). Run with -race.
func TestWriteAheadRacesWritersKeepsOrder(t *testing.T) {
	l := startLoop(t, 1, false, 32)
	s, c := l.h.sessions[0], l.clients[0]
	const n = 20000
	type result struct {
		n    int
		code uint16
		err  error
	}
	got := make(chan result, 1)
	go func() {
		k, code, err := readIndexed(c)
		got <- result{k, code, err}
	}()
	b := l.env.Batch()
	for i := 0; i < n; i++ {
		var err error
		if i%3 == 0 {
			err = s.Send(indexed(i, 16))
		} else {
			err = b.Send(s, indexed(i, 16))
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i%50 == 49 {
			b.Flush()
			b = l.env.Batch()
		}
	}
	b.Flush()
	waitIdle(t, s)
	s.CloseWith(1000, "done")
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n != n || r.code != 1000 {
		t.Fatalf("client got %d of %d frames, then close %d", r.n, n, r.code)
	}
	if k := l.obs.slow.Load(); k != 0 {
		t.Fatalf("%d slow clients counted", k)
	}
}

// Several goroutines queue to one session at once through Batches (as the
// fan-out's and the RPC workers do), far past its 32-frame queue, while the
// client reads and its socket never backs up (all the frames together fit
// in the socket buffers). One that writes the queue ahead may find it
// taken by another, or filled again by the others before it queues its own
// frame: that is no reason to judge the client slow. Every frame arrives,
// each sender's in its order, and no slow client is counted.
func TestConcurrentWritersAheadNotSlow(t *testing.T) {
	l := startLoop(t, 1, false, 32)
	s, c := l.h.sessions[0], l.clients[0]
	const senders, each = 8, 200 // about 35 KB on the wire
	got := make(chan [][]byte, 1)
	go func() { got <- readFrames(c, senders*each) }()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			b := l.env.Batch()
			defer b.Flush()
			for i := range each {
				if err := b.Send(s, indexed(g<<16|i, 16)); err != nil {
					t.Errorf("sender %d, frame %d: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	frames := <-got
	if len(frames) != senders*each {
		t.Fatalf("client got %d of %d frames", len(frames), senders*each)
	}
	next := make([]int, senders)
	for _, p := range frames {
		v := int(binary.BigEndian.Uint32(p))
		g, i := v>>16, v&0xffff
		if g >= senders || i != next[g] {
			t.Fatalf("sender %d's frame %d arrived when %d was due", g, i, next[g])
		}
		next[g]++
	}
	if k := l.obs.slow.Load(); k != 0 {
		t.Fatalf("%d slow clients counted", k)
	}
}
