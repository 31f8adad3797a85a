//go:build linux

package wsdial

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gochat-im/gochat/bench/internal/kstamp"
)

// stampConn reads its TCP connection with recvmsg and keeps the kernel's
// receive timestamp of the latest read in *at (0 if that read came
// unstamped).
type stampConn struct {
	net.Conn
	rc  syscall.RawConn
	at  *int64
	oob [kstamp.OOBSize]byte
}

// stampReads returns c reading with receive timestamps into *at, or c
// itself when it is not a TCP connection or the kernel will not stamp it.
func stampReads(c net.Conn, at *int64) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = kstamp.Enable(int(fd)) }); err != nil || serr != nil {
		return c
	}
	return &stampConn{Conn: c, rc: rc, at: at}
}

func (s *stampConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n   int
		err error
	)
	// Read waits for the socket (honouring the read deadline) whenever the
	// function returns false.
	rerr := s.rc.Read(func(fd uintptr) bool {
		var oobn int
		for {
			n, oobn, _, _, err = unix.Recvmsg(int(fd), p, s.oob[:], 0)
			if err != unix.EINTR {
				break
			}
		}
		if err == unix.EAGAIN {
			return false
		}
		if err == nil {
			// Unstamped data clears the stamp: an older one would make a
			// later message look early.
			*s.at = kstamp.Parse(s.oob[:oobn])
		}
		return true
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
