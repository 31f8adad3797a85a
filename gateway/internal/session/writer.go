package session

import (
	"errors"
	"syscall"
	"unsafe"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// The write side. A session's queue has at most one writer at a time: the
// one that set scheduled. That writer is either a pool task of its own
// (Run, which may block in netpoll's Flush) or a chunk of a Batch (which
// never blocks, and hands a session whose socket is full over to a Run
// task). The writer sends each batch of queued frames straight to the
// non-blocking socket with one write(2) or writev(2), the same single
// system call netpoll's Flush would make, without copying the frames
// into netpoll's output buffer or allocating its buffer nodes. What the
// socket does not take goes into netpoll's output buffer (the backlog),
// and a blocking Flush sends it before anything else.
//
// One goroutine besides the writer may write: one that finds the queue at
// a bound while there is no backlog writes what waits itself
// (writeAhead), without blocking, instead of waiting for a writer that
// has not run yet. It takes the frames off the queue and writes them
// under one hold of ioMu, as the writer does, so frames keep their order;
// it never flushes (there is no backlog when it starts, and one it leaves
// is the writer's to flush: the writer checks for one before it gives up
// the queue), so only the writer ever waits on the client.
//
// Writing to the socket directly is safe because netpoll writes to it
// only on behalf of a Flush (Flush itself, or its poller while that Flush
// waits for the socket to drain; only our writer calls Flush, and a nil
// return means the output buffer is empty and the poller done with it),
// and closes it only after every close callback has run: close callbacks
// run last-registered first, and OnClosed, added in the gateway's
// OnPrepare after netpoll's own callback (netpoll v0.7.2
// connection_impl.go init, connection_onevent.go), runs before the one
// that closes the fd and frees the buffers. It sets ioClosed under ioMu,
// which every write holds, so no write can reach a closed (or reused)
// file descriptor. A Flush that fails (the write timeout) may leave the
// poller still sending: the connection is always killed then, and nothing
// is written to it again.

// maxIovecs bounds the frames one writev(2) sends.
const maxIovecs = 64

// push appends frame to the write queue and counts its bytes. wmu is held.
func (s *Session) push(frame []byte) {
	s.wq = append(s.wq, frame)
	s.wbytes += uint32(len(frame))
}

// full reports whether a frame of n bytes would take the queue over one of
// its bounds: WriteQueue frames, or WriteQueueBytes bytes not yet taken by
// the client (one frame is let in whatever its size when nothing waits, so
// that a large reply can always be sent). wmu is held.
func (s *Session) full(n int) bool {
	return len(s.wq) >= s.env.WriteQueue ||
		(s.wbytes > 0 && s.env.WriteQueueBytes > 0 && int64(s.wbytes)+int64(n) > int64(s.env.WriteQueueBytes))
}

// queue appends frame to the write queue. start reports whether the caller
// must start a writer for the session: no writer owned it.
//
// A queue at one of its bounds is first written to the socket by this
// goroutine (writeAhead), without blocking, when the socket is not backed
// up: the frames waiting are there only because their writer has not run
// yet (a pool task not yet started, a Batch not yet flushed), and the
// client is not to blame for that. Only when the socket is backed up (the
// client has not taken what was already written) and the queue is still
// at a bound is the client too slow: the frames still waiting are dropped,
// a close frame with code 1008 takes their place, and ErrSlow is returned.
func (s *Session) queue(frame []byte) (start bool, err error) {
	ahead, backedUp := false, false
	s.wmu.Lock()
	for {
		if s.closeAfter || s.State() >= StateClosing {
			s.wmu.Unlock()
			return false, ErrClosed
		}
		if !s.full(len(frame)) {
			break
		}
		if ahead && !backedUp {
			// The socket is not backed up (it took what was written
			// ahead, or another goroutine is writing the queue), but
			// other goroutines filled the queue again meanwhile: the
			// client is not slow. The frame goes in over the bound, which
			// concurrent senders thus pass by at most one frame each.
			break
		}
		if ahead {
			// The socket is backed up (or writing failed): too slow.
			for _, f := range s.wq {
				s.wbytes -= uint32(len(f))
			}
			clear(s.wq)
			s.wq = s.wq[:0]
			s.push(s.env.SlowClose)
			s.closeAfter = true
			start = !s.scheduled
			s.scheduled = true
			s.wmu.Unlock()
			s.advance(StateClosing)
			s.env.Obs.SlowClient()
			s.env.Log.Debug("client too slow; disconnecting", "conn", s.id, "uid", s.UID())
			return start, ErrSlow
		}
		s.wmu.Unlock()
		ahead = true
		backedUp = s.writeAhead()
		s.wmu.Lock()
	}
	s.push(frame)
	start = !s.scheduled
	s.scheduled = true
	s.wmu.Unlock()
	return start, nil
}

// writeAhead writes the frames waiting in the queue to the socket on the
// calling goroutine, without blocking, for queue, when the queue is at a
// bound but the socket is not backed up. What the socket does not take
// goes into netpoll's output buffer as the writer would put it there;
// the queue's writer (there is one: the queue is not empty) flushes it.
// Taking the frames and writing them under one hold of ioMu keeps them in
// order with the writer's own writes. It does nothing when the socket is
// backed up or closing, or nothing waits. It reports whether the socket
// is backed up or closing when it returns: false when it took every frame
// written, or when nothing waited (another goroutine took the queue).
func (s *Session) writeAhead() (backedUp bool) {
	s.ioMu.Lock()
	if s.wbits&(ioClosed|backlog) != 0 {
		s.ioMu.Unlock()
		return true
	}
	s.wmu.Lock()
	q := s.wq
	if len(q) == 0 {
		s.wmu.Unlock()
		s.ioMu.Unlock()
		return false
	}
	s.wq = nil
	s.wmu.Unlock()
	pending, sent, err := s.write(q)
	s.wrote(q, sent)
	s.ioMu.Unlock()
	if err != nil {
		s.writeFailed(err)
		return true
	}
	s.env.Obs.FramesOut(len(q))
	return pending
}

// wrote accounts for q, taken from the queue and written with sent bytes
// reaching the socket (the rest went into the backlog), and gives q's
// array back to the queue for the next frames when it is small. ioMu is
// held.
func (s *Session) wrote(q [][]byte, sent int) {
	clear(q)
	s.wmu.Lock()
	s.wbytes -= uint32(sent)
	if s.wq == nil && cap(q) <= 64 && !s.closeAfter {
		s.wq = q[:0] // keep the array for the next frames
	}
	s.wmu.Unlock()
}

// Send queues one encoded frame (or raw bytes during the handshake). It
// never blocks on the network. If the connection's queue is at a bound
// (WriteQueue frames, WriteQueueBytes bytes) while its socket is backed
// up, the client reads too slowly: the frames still waiting are dropped,
// a close frame with code 1008 is queued in their place, the disconnect
// is counted and ErrSlow returned (see queue).
func (s *Session) Send(frame []byte) error {
	frame, err := s.wire(frame)
	if err != nil {
		return err
	}
	return s.send(frame)
}

// send is Send of a frame (or handshake bytes) that goes out as it is.
func (s *Session) send(frame []byte) error {
	start, err := s.queue(frame)
	if start && !s.env.Writers.Submit(s) {
		s.Kill()
		if err == nil {
			err = ErrClosed
		}
	}
	return err
}

// SendHandshake sends the 101 response. Call it only from
// Handler.Handshake, on the OnRequest goroutine, before anything else is
// sent: then netpoll keeps the socket open until the call returns, and
// nothing can be waiting in its output buffer, so the response goes
// straight to the socket with one write(2). It never blocks (the socket is
// non-blocking, and a fresh one has room for a response); whatever is not
// written at once is queued first, for the writer.
func (s *Session) SendHandshake(resp []byte) error {
	fc, ok := s.conn.(interface{ Fd() int })
	s.wmu.Lock()
	if ok && !s.scheduled && len(s.wq) == 0 && !s.closeAfter && s.conn.IsActive() {
		n, _ := syscall.Write(fc.Fd(), resp)
		if n == len(resp) {
			s.wmu.Unlock()
			s.env.Obs.FramesOut(1)
			return nil
		}
		if n > 0 {
			resp = resp[n:]
		}
		// Queue the rest while still holding wmu, so that no frame can
		// be queued ahead of it, and start the writer.
		s.push(resp)
		s.scheduled = true
		s.wmu.Unlock()
		if !s.env.Writers.Submit(s) {
			s.Kill()
			return ErrClosed
		}
		return nil
	}
	s.wmu.Unlock()
	return s.send(resp)
}

// wire returns frame as it goes to this session's client: a server text
// frame (JSON) becomes its MessagePack binary frame for a Binary session;
// anything else is sent as it is.
func (s *Session) wire(frame []byte) ([]byte, error) {
	if len(frame) == 0 || frame[0] != 0x80|byte(ws.OpText) || !s.Binary() {
		return frame, nil
	}
	return wsframe.MsgpackFrame(frame)
}

// Run is the pool task of a session's writer that may block: it drains the
// queue, and when the socket does not take everything it waits in
// netpoll's Flush (up to the write timeout) on this goroutine only.
func (s *Session) Run() {
	if n := s.drain(true); n > 0 {
		s.env.Obs.FramesOut(n)
	}
}

// drain writes what is queued until the queue is empty, then gives up the
// queue (closing the connection if a close was queued). With block false
// it never waits for the client: a session with a backlog is handed to a
// Run task of its own. It returns the frames written.
func (s *Session) drain(block bool) int {
	frames := 0
	s.ioMu.Lock()
	pending := s.wbits&backlog != 0
	s.ioMu.Unlock()
	for {
		if pending {
			if !block {
				if !s.env.Writers.Submit(s) {
					s.Kill()
				}
				return frames
			}
			// Only this session's writer waits here, and nothing else
			// touches netpoll's output buffer while there is a backlog.
			if err := s.conn.Writer().Flush(); err != nil {
				s.writeFailed(err)
				return frames
			}
			s.ioMu.Lock()
			s.wbits &^= backlog
			// The backlog is gone: what the client has not taken is
			// what waits in the queue.
			s.wmu.Lock()
			s.wbytes = 0
			for _, f := range s.wq {
				s.wbytes += uint32(len(f))
			}
			s.wmu.Unlock()
			s.ioMu.Unlock()
		}
		// Take the frames and write them under one hold of ioMu, so that
		// a writeAhead cannot send later frames between the two.
		s.ioMu.Lock()
		s.wmu.Lock()
		q := s.wq
		if len(q) == 0 {
			if s.wbits&(backlog|ioClosed) == backlog {
				// A writeAhead left a backlog since this writer last
				// looked: it must be flushed before the queue is given up.
				s.wmu.Unlock()
				s.ioMu.Unlock()
				pending = true
				continue
			}
			s.scheduled = false
			closeNow := s.closeAfter
			s.wmu.Unlock()
			s.ioMu.Unlock()
			if closeNow {
				s.Kill()
			}
			return frames
		}
		s.wq = nil
		s.wmu.Unlock()

		var (
			err  error
			sent int
		)
		pending, sent, err = s.write(q)
		if err == nil {
			frames += len(q)
		}
		s.wrote(q, sent)
		s.ioMu.Unlock()
		if err != nil {
			s.writeFailed(err)
			return frames
		}
	}
}

// writeFailed closes the connection after a write error.
func (s *Session) writeFailed(err error) {
	s.wmu.Lock()
	s.wq, s.wbytes = nil, 0
	s.closeAfter = true
	s.wmu.Unlock()
	// A connection already closing (its queue overflowed, which counted
	// it, or closed for another reason) is not counted again when its
	// close frame times out too.
	if errors.Is(err, netpoll.ErrWriteTimeout) && s.State() < StateClosing {
		s.env.Obs.SlowClient()
		s.env.Log.Debug("write timeout; disconnecting", "conn", s.id, "uid", s.UID())
	}
	s.Kill()
}

// write sends q to the socket without blocking and puts what it does not
// take into netpoll's output buffer; pending reports that it did, so a
// Flush must follow, and sent is the bytes the socket took. Frames queued
// behind a backlog join the backlog, to keep their order. ioMu is held.
func (s *Session) write(q [][]byte) (pending bool, sent int, err error) {
	if s.wbits&ioClosed != 0 || !s.conn.IsActive() {
		return false, 0, ErrClosed
	}
	off := 0 // bytes of q[0] already sent
	if s.wbits&backlog == 0 {
		fc, ok := s.conn.(interface{ Fd() int })
		if ok {
			var n int
			if n, err = writeFrames(fc.Fd(), q); err != nil {
				return false, n, err
			}
			sent = n
			for len(q) > 0 && n >= len(q[0]) {
				n -= len(q[0])
				q = q[1:]
			}
			if len(q) == 0 {
				return false, sent, nil
			}
			off = n
		}
	}
	// The socket is full (or a backlog waits): queue the rest in netpoll's
	// output buffer, in one node so the Flush is one sendmsg.
	total := -off
	for _, f := range q {
		total += len(f)
	}
	buf, err := s.conn.Writer().Malloc(total)
	if err != nil {
		return false, sent, err
	}
	k := copy(buf, q[0][off:])
	for _, f := range q[1:] {
		k += copy(buf[k:], f)
	}
	s.wbits |= backlog
	return true, sent, nil
}

// writeFrames writes q to the non-blocking socket fd, one frame with
// write(2), more with writev(2), and returns how many bytes it took (0 if
// it was full).
func writeFrames(fd int, q [][]byte) (int, error) {
	if len(q) == 1 {
		return sysWrite(fd, q[0])
	}
	total := 0
	for len(q) > 0 {
		k := min(len(q), maxIovecs)
		n, want, err := writev(fd, q[:k])
		total += n
		if err != nil || n < want {
			return total, err
		}
		q = q[k:]
	}
	return total, nil
}

// sysWrite is one write(2); a full socket is not an error.
func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, e
	}
}

// writev is one writev(2) of at most maxIovecs frames; it returns the
// bytes written and the bytes offered. A full socket is not an error.
func writev(fd int, q [][]byte) (n, want int, err error) {
	var iov [maxIovecs]syscall.Iovec
	k := 0
	for _, f := range q {
		if len(f) == 0 {
			continue
		}
		iov[k].Base = &f[0]
		iov[k].SetLen(len(f))
		want += len(f)
		k++
	}
	if k == 0 {
		return 0, 0, nil
	}
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		switch e {
		case 0:
			return int(r), want, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, want, nil
		}
		return 0, want, e
	}
}
