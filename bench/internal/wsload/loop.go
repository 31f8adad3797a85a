//go:build linux

package wsload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gochat-im/gochat/bench/internal/kstamp"
)

// Connection states.
const (
	stConnecting = iota // TCP connect in progress
	stHandshake         // request sent, reading the HTTP response
	stHello             // upgraded, waiting for hello
	stOpen              // hello received: counted as connected
	stClosed
)

// conn is one client connection. It is small on purpose: a worker holds
// up to ~19,900 of them, and the figure of interest is the gateway's
// memory, not ours.
type conn struct {
	fd    int32
	state uint8
	gw    uint16
	user  int32
	id    int64  // the gateway's conn id, from hello
	start int64  // dial time, unix nanos
	buf   []byte // unparsed input (a frame or response split across reads)
}

// loop runs every connection of one worker on one epoll instance, on one
// goroutine: dialling at a bounded rate and concurrency, the handshake,
// reading frames and counting them, and keepalives.
type loop struct {
	// mu guards the stats and the connections' state against report
	// and command handling.
	mu    sync.Mutex
	plan  *Plan
	ep    int
	conns []*conn // indexed by fd
	open  []*conn // established connections, for keepalives and targets
	rbuf  []byte
	evs   []unix.EpollEvent
	// recvmsg arguments, set up once: every read lands in rbuf, and the
	// kernel's receive timestamp of the data in oob.
	msg unix.Msghdr
	iov unix.Iovec
	oob [kstamp.OOBSize]byte

	dsts    []unix.SockaddrInet4
	srcs    []netip.Addr
	reqs    [][]byte // handshake request prefix per gateway ("GET /ws?token=")
	next    int      // next user index to dial (relative to plan.First)
	pending int      // connections dialled but not open
	mask    [4]byte

	stats Report
	hist  *Histogram // push arrival offsets since the mark
	setup *Histogram // dial -> hello times
	kaPos int        // keepalive cursor into open
	kaAt  time.Time
	// quietUntil: no keepalives before this time (unix nanos), so a
	// measured push round is not mixed with heartbeat traffic.
	quietUntil int64
}

func newLoop(p *Plan) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &loop{plan: p, ep: ep, rbuf: make([]byte, 64<<10), evs: make([]unix.EpollEvent, 512),
		hist: NewHistogram(), setup: NewHistogram()}
	for _, g := range p.Gateways {
		ap, err := netip.ParseAddrPort(g.Addr)
		if err != nil || !ap.Addr().Is4() {
			return nil, errors.New("gateway address " + g.Addr + ": want IPv4 host:port")
		}
		l.dsts = append(l.dsts, unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		l.reqs = append(l.reqs, []byte("GET "+g.Path+"?token="))
	}
	for _, s := range p.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, errors.New("source address " + s + ": want IPv4")
		}
		l.srcs = append(l.srcs, a)
	}
	l.iov.Base = &l.rbuf[0]
	l.iov.SetLen(len(l.rbuf))
	l.msg.Iov = &l.iov
	l.msg.SetIovlen(1)
	l.msg.Control = &l.oob[0]
	binary.LittleEndian.PutUint32(l.mask[:], rand.Uint32()|1)
	l.stats.Worker = p.Worker
	l.stats.OpenByGW = make([]int64, len(p.Gateways))
	return l, nil
}

func (l *loop) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c != nil && c.state != stClosed {
			l.drop(c)
		}
	}
	for _, c := range l.open {
		if c.state != stClosed {
			l.drop(c)
		}
	}
	_ = unix.Close(l.ep)
}

// dialMore starts connections while the plan allows: up to Concurrency
// in flight and no more than the rate budget.
func (l *loop) dialMore(budget int) int {
	started := 0
	for started < budget && l.next < l.plan.Count && l.pending < l.plan.Concurrency {
		u := l.plan.First + l.next
		l.next++
		if err := l.dial(u); err != nil {
			l.stats.DialErrors++
			l.stats.note(err.Error())
			continue
		}
		started++
	}
	return started
}

func (l *loop) dial(user int) error {
	gw := user % len(l.dsts)
	src := l.srcs[(user/len(l.dsts))%len(l.srcs)]
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// Pick the source port at connect time, per destination, so each
	// source address offers the whole ephemeral range to every gateway.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		_ = unix.Close(fd)
		return err
	}
	// The kernel stamps each read with the time the data arrived, so
	// arrival times do not depend on when this loop gets to read them.
	_ = kstamp.Enable(fd)
	dst := l.dsts[gw]
	if err := unix.Connect(fd, &dst); err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return err
	}
	c := &conn{fd: int32(fd), state: stConnecting, gw: uint16(gw), user: int32(user), start: time.Now().UnixNano()}
	if l.stats.StartNS == 0 {
		l.stats.StartNS = c.start
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		_ = unix.Close(fd)
		return err
	}
	for len(l.conns) <= fd {
		l.conns = append(l.conns, nil)
	}
	l.conns[fd] = c
	l.pending++
	l.stats.Dialled++
	return nil
}

// poll waits up to ms milliseconds and handles what is ready; it returns
// how many connections were ready.
func (l *loop) poll(ms int) int {
	n, err := unix.EpollWait(l.ep, l.evs, ms)
	if err != nil {
		return 0 // EINTR
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var now int64
	for i := 0; i < n; i++ {
		ev := l.evs[i]
		fd := int(ev.Fd)
		if fd >= len(l.conns) || l.conns[fd] == nil {
			continue
		}
		c := l.conns[fd]
		if c.state == stConnecting {
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				l.connected(c)
			}
			continue
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			l.readable(c, now)
		}
	}
	return n
}

func (l *loop) connected(c *conn) {
	fd := int(c.fd)
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		if err == nil {
			err = unix.Errno(e)
		}
		l.fail(c, "connect: "+err.Error())
		return
	}
	tok, err := l.plan.token(int(c.user))
	if err != nil {
		l.fail(c, "token: "+err.Error())
		return
	}
	g := l.plan.Gateways[c.gw]
	req := make([]byte, 0, 256+len(tok))
	req = append(req, l.reqs[c.gw]...)
	req = append(req, tok...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, g.Addr...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	if n, err := unix.Write(fd, req); err != nil || n != len(req) {
		l.fail(c, "write request")
		return
	}
	c.state = stHandshake
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.fd})
}

// fail closes a connection that never opened.
func (l *loop) fail(c *conn, why string) {
	l.stats.SetupErrors++
	l.stats.note(why)
	l.pending--
	l.drop(c)
}

func (l *loop) drop(c *conn) {
	c.state = stClosed
	c.buf = nil
	_ = unix.Close(int(c.fd))
	l.conns[c.fd] = nil
}

// readable reads what c has; now is the time the poll returned, used for
// data without a kernel timestamp.
func (l *loop) readable(c *conn, now int64) {
	for {
		n, at, err := l.recv(int(c.fd))
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if n <= 0 {
			l.closed(c, "eof")
			return
		}
		if at == 0 {
			at = now
		}
		data := l.rbuf[:n]
		if len(c.buf) > 0 {
			c.buf = append(c.buf, data...)
			data = c.buf
		}
		rest, ok := l.consume(c, data, at)
		if !ok {
			return
		}
		if len(rest) > 0 {
			c.buf = append(c.buf[:0:0], rest...)
		} else {
			c.buf = nil
		}
		if n < len(l.rbuf) {
			return
		}
	}
}

// recv reads from fd into rbuf with recvmsg and returns the byte count
// and the kernel's receive timestamp of the data (unix nanos; 0 if none
// came), without allocating.
func (l *loop) recv(fd int) (int, int64, error) {
	l.msg.SetControllen(len(l.oob))
	l.msg.Flags = 0
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&l.msg)), 0)
	if e != 0 {
		return -1, 0, e
	}
	return int(r), l.stamp(), nil
}

// stamp returns the kernel's receive timestamp in the control data recv
// got.
func (l *loop) stamp() int64 {
	return kstamp.Parse(l.oob[:min(int(l.msg.Controllen), len(l.oob))])
}

// closed handles a connection the server closed or that failed.
func (l *loop) closed(c *conn, why string) {
	if c.state == stOpen {
		l.stats.Closed++
		l.stats.Open--
		l.stats.OpenByGW[c.gw]--
		l.stats.note("closed: " + why)
	} else {
		l.fail(c, "closed during setup: "+why)
		return
	}
	l.drop(c)
}

// consume parses data and returns what is left of an incomplete response
// or frame; ok is false if the connection was closed.
func (l *loop) consume(c *conn, data []byte, now int64) (rest []byte, ok bool) {
	if c.state == stHandshake {
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			if len(data) > 4096 {
				l.fail(c, "response head too large")
				return nil, false
			}
			return data, true
		}
		if !bytes.HasPrefix(data, []byte("HTTP/1.1 101 ")) {
			status := "?"
			if len(data) >= 12 {
				status = string(data[9:12])
			}
			l.fail(c, "handshake refused: HTTP "+status)
			return nil, false
		}
		c.state = stHello
		data = data[end+4:]
	}
	for len(data) >= 2 {
		op := data[0] & 0x0f
		hl, plen := 2, int(data[1]&0x7f)
		if data[1]&0x80 != 0 {
			l.closed(c, "masked server frame")
			return nil, false
		}
		switch plen {
		case 126:
			if len(data) < 4 {
				return data, true
			}
			hl, plen = 4, int(binary.BigEndian.Uint16(data[2:]))
		case 127:
			if len(data) < 10 {
				return data, true
			}
			hl, plen = 10, int(binary.BigEndian.Uint64(data[2:]))
		}
		if len(data) < hl+plen {
			return data, true
		}
		payload := data[hl : hl+plen]
		data = data[hl+plen:]
		switch op {
		case 0x1: // text
			if !l.text(c, payload, now) {
				return nil, false
			}
		case 0x8: // close
			code := "none"
			if len(payload) >= 2 {
				code = strconv.Itoa(int(binary.BigEndian.Uint16(payload)))
			}
			l.closed(c, "close frame "+code)
			return nil, false
		case 0x9: // ping: answer with an empty pong (payload ignored)
			l.pong(c)
		}
	}
	return data, true
}

// text handles one text frame; hello opens the connection, anything else
// counts as a pushed frame.
func (l *loop) text(c *conn, p []byte, now int64) bool {
	if c.state == stHello {
		id, ok := helloConnID(p)
		if !ok {
			l.fail(c, "first frame is not hello")
			return false
		}
		c.id, c.state = id, stOpen
		l.pending--
		l.open = append(l.open, c)
		l.stats.Open++
		l.stats.OpenByGW[c.gw]++
		l.stats.Connected++
		l.stats.LastOpenNS = now
		l.setup.Add(time.Duration(now - c.start))
		return true
	}
	l.stats.Frames++
	if l.stats.Mark != 0 {
		l.stats.MarkFrames++
		if now > l.stats.LastNS {
			l.stats.LastNS = now
		}
		if l.stats.FirstNS == 0 || now < l.stats.FirstNS {
			l.stats.FirstNS = now
		}
		l.hist.Add(time.Duration(now - l.stats.MarkNS))
	}
	return true
}

// helloConnID finds "conn":<number> in a hello frame.
func helloConnID(p []byte) (int64, bool) {
	if !bytes.Contains(p, []byte(`"type":"hello"`)) {
		return 0, false
	}
	i := bytes.Index(p, []byte(`"conn":`))
	if i < 0 {
		return 0, false
	}
	p = p[i+len(`"conn":`):]
	j := 0
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		j++
	}
	id, err := strconv.ParseInt(string(p[:j]), 10, 64)
	return id, err == nil
}

// pong writes an empty, masked pong frame: a client heartbeat the gateway
// counts as activity and does not answer.
func (l *loop) pong(c *conn) {
	f := [6]byte{0x8a, 0x80, l.mask[0], l.mask[1], l.mask[2], l.mask[3]}
	if _, err := unix.Write(int(c.fd), f[:]); err != nil && err != unix.EAGAIN {
		l.stats.note("keepalive write: " + err.Error())
	}
}

// keepalive sends heartbeats so that each open connection sends one per
// Keepalive interval, spread evenly: every call covers the share of the
// connections due since the last call.
func (l *loop) keepalive(now time.Time) {
	if l.plan.Keepalive <= 0 || len(l.open) == 0 || now.UnixNano() < l.quietUntil {
		l.kaAt = now
		return
	}
	if l.kaAt.IsZero() {
		l.kaAt = now
		return
	}
	elapsed := now.Sub(l.kaAt)
	n := int(int64(len(l.open)) * int64(elapsed) / int64(l.plan.Keepalive))
	if n == 0 {
		return
	}
	l.kaAt = now
	for i := 0; i < n && len(l.open) > 0; i++ {
		if l.kaPos >= len(l.open) {
			l.kaPos = 0
			l.compact()
			if len(l.open) == 0 {
				return
			}
		}
		c := l.open[l.kaPos]
		l.kaPos++
		if c.state == stOpen {
			l.pong(c)
		}
	}
}

// compact drops closed connections from the open list.
func (l *loop) compact() {
	k := 0
	for _, c := range l.open {
		if c.state == stOpen {
			l.open[k] = c
			k++
		}
	}
	clear(l.open[k:])
	l.open = l.open[:k]
}
