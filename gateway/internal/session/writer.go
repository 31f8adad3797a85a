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

// queue appends frame to the write queue. start reports whether the caller
// must start a writer for the session: no writer owned it.
func (s *Session) queue(frame []byte) (start bool, err error) {
	s.wmu.Lock()
	if s.closeAfter || s.State() >= StateClosing {
		s.wmu.Unlock()
		return false, ErrClosed
	}
	if len(s.wq) >= s.env.WriteQueue {
		clear(s.wq)
		s.wq = append(s.wq[:0], s.env.SlowClose)
		s.closeAfter = true
		start = !s.scheduled
		s.scheduled = true
		s.wmu.Unlock()
		s.advance(StateClosing)
		s.env.Obs.SlowClient()
		s.env.Log.Debug("client too slow; disconnecting", "conn", s.id, "uid", s.UID())
		return start, ErrSlow
	}
	s.wq = append(s.wq, frame)
	start = !s.scheduled
	s.scheduled = true
	s.wmu.Unlock()
	return start, nil
}

// Send queues one encoded frame (or raw bytes during the handshake). It
// never blocks on the network. If the connection already has WriteQueue
// frames waiting, the client reads too slowly: the frames still waiting
// are dropped, a close frame with code 1008 is queued in their place, the
// disconnect is counted and ErrSlow returned.
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
		s.wq = append(s.wq, resp)
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
			// Only this session's writer waits here.
			if err := s.conn.Writer().Flush(); err != nil {
				s.writeFailed(err)
				return frames
			}
			s.ioMu.Lock()
			s.wbits &^= backlog
			s.ioMu.Unlock()
		}
		s.wmu.Lock()
		q := s.wq
		if len(q) == 0 {
			s.scheduled = false
			closeNow := s.closeAfter
			s.wmu.Unlock()
			if closeNow {
				s.Kill()
			}
			return frames
		}
		s.wq = nil
		s.wmu.Unlock()

		var err error
		pending, err = s.write(q)
		if err == nil {
			frames += len(q)
		}
		clear(q)
		s.wmu.Lock()
		if s.wq == nil && cap(q) <= 64 && !s.closeAfter {
			s.wq = q[:0] // keep the array for the next frames
		}
		s.wmu.Unlock()
		if err != nil {
			s.writeFailed(err)
			return frames
		}
	}
}

// writeFailed closes the connection after a write error.
func (s *Session) writeFailed(err error) {
	s.wmu.Lock()
	s.wq = nil
	s.closeAfter = true
	s.wmu.Unlock()
	if errors.Is(err, netpoll.ErrWriteTimeout) {
		s.env.Obs.SlowClient()
		s.env.Log.Debug("write timeout; disconnecting", "conn", s.id, "uid", s.UID())
	}
	s.Kill()
}

// write sends q to the socket without blocking and puts what it does not
// take into netpoll's output buffer; pending reports that it did, so a
// Flush must follow. Frames queued behind a backlog join the backlog, to
// keep their order.
func (s *Session) write(q [][]byte) (pending bool, err error) {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.wbits&ioClosed != 0 || !s.conn.IsActive() {
		return false, ErrClosed
	}
	off := 0 // bytes of q[0] already sent
	if s.wbits&backlog == 0 {
		fc, ok := s.conn.(interface{ Fd() int })
		if ok {
			var n int
			if n, err = writeFrames(fc.Fd(), q); err != nil {
				return false, err
			}
			for len(q) > 0 && n >= len(q[0]) {
				n -= len(q[0])
				q = q[1:]
			}
			if len(q) == 0 {
				return false, nil
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
		return false, err
	}
	k := copy(buf, q[0][off:])
	for _, f := range q[1:] {
		k += copy(buf[k:], f)
	}
	s.wbits |= backlog
	return true, nil
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
