// Package wsclient holds what GoChat's own Go WebSocket clients (gochatctl,
// the bench tools, the end-to-end tests) need beyond gobwas/ws.
package wsclient

import (
	"bufio"
	"net"
)

// Buffered returns c with br in front of it. ws.Dialer.Dial returns a
// non-nil reader when it read more than the handshake response: the server
// wrote its first frame (GoChat's hello) right behind the 101 and both
// arrived together. Those bytes are in br, not in c, so a client that
// reads c alone loses the frame; read the returned connection instead.
// With br nil, c is returned as it is.
func Buffered(c net.Conn, br *bufio.Reader) net.Conn {
	if br == nil || br.Buffered() == 0 {
		return c
	}
	return &bufConn{Conn: c, br: br}
}

type bufConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
}

func (b *bufConn) Read(p []byte) (int, error) {
	if b.br != nil {
		if b.br.Buffered() > 0 {
			return b.br.Read(p)
		}
		b.br = nil
	}
	return b.Conn.Read(p)
}
