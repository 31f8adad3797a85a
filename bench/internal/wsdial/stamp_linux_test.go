//go:build linux

package wsdial

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// tcpPair returns the two ends of a loopback TCP connection: the client
// end wrapped as a Conn, the server end raw.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	cli, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return newConn(cli, nil), srv
}

// frame is p as one unmasked text frame, as a server sends it.
func frame(p string) []byte {
	var w sliceWriter
	_ = ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))})
	return append(w.b, p...)
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// Arrival is when the message's bytes reached the socket, not when it was
// read: a message read long after it arrived keeps its arrival time, and
// one whose last bytes came later gets theirs.
func TestArrivalIsTheKernelReceiveTime(t *testing.T) {
	c, srv := tcpPair(t)
	if !c.Arrival().IsZero() {
		t.Fatal("arrival set before any read")
	}
	// The kernel turns receive stamping on for the whole machine a moment
	// after the first socket asks for it (deferred work): until then data
	// comes unstamped and Arrival stays zero.
	for deadline := time.Now().Add(5 * time.Second); c.Arrival().IsZero(); {
		if time.Now().After(deadline) {
			t.Fatal("the kernel stamped no read in 5 s")
		}
		if _, err := srv.Write(frame("warm-up")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}

	before := time.Now()
	// On loopback a write returns once the data is in the peer's receive
	// queue, stamped.
	if _, err := srv.Write(frame("first")); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	time.Sleep(30 * time.Millisecond) // the client is "busy"
	readAt := time.Now()
	if got, err := c.ReadMessage(); err != nil || string(got) != "first" {
		t.Fatalf("got %q, %v", got, err)
	}
	if a := c.Arrival(); a.Before(before) || a.After(written) {
		t.Fatalf("arrival %v not between the write's start %v and end %v (read at %v)", a, before, written, readAt)
	}

	// A message split over two writes: its arrival is the second's.
	f := frame("second")
	if _, err := srv.Write(f[:4]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		got, err := c.ReadMessage()
		if err == nil && string(got) != "second" {
			err = errors.New("got " + string(got))
		}
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	lastPart := time.Now()
	if _, err := srv.Write(f[4:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a := c.Arrival(); a.Before(lastPart) {
		t.Fatalf("arrival %v is before the message's last bytes were written (%v)", a, lastPart)
	}

	// The server closing is an EOF, as with a plain connection.
	srv.Close()
	if _, err := c.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the server closed: %v, want EOF", err)
	}
}
