package wsdial

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// A frame from WriteText is one write, and the server side decodes it as
// a final, masked text frame with the same payload, at every length
// encoding.
func TestWriteTextIsOneMaskedFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		cli, srv := net.Pipe()
		c := newConn(cli, nil)
		p := bytes.Repeat([]byte("ab"), n/2+1)[:n]
		go func() {
			defer cli.Close()
			_ = c.WriteText(p)
		}()
		// net.Pipe hands each Write to one Read when the buffer is big enough.
		buf := make([]byte, n+64)
		m, err := io.ReadAtLeast(srv, buf, 2)
		if err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(srv)
		frame := append(buf[:m], rest...)
		if len(rest) != 0 {
			t.Fatalf("len %d: the frame took more than one write (%d bytes, then %d)", n, m, len(rest))
		}
		f, err := ws.ReadFrame(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if !f.Header.Fin || f.Header.OpCode != ws.OpText || !f.Header.Masked {
			t.Fatalf("len %d: header %+v", n, f.Header)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if !bytes.Equal(f.Payload, p) {
			t.Fatalf("len %d: payload differs", n)
		}
		srv.Close()
	}
}

// ReadMessage reassembles fragments, answers a ping between them with a
// pong carrying the same payload, and reports a close after echoing it.
func TestReadMessage(t *testing.T) {
	var in bytes.Buffer
	write := func(fin bool, op ws.OpCode, p string) {
		if err := ws.WriteFrame(&in, ws.Frame{Header: ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	write(true, ws.OpText, `{"type":"hello"}`)
	write(false, ws.OpText, "frag")
	write(true, ws.OpPing, "are you there")
	write(false, ws.OpContinuation, "men")
	write(true, ws.OpContinuation, "ted")
	write(true, ws.OpBinary, strings.Repeat("z", 70000))
	write(true, ws.OpClose, "\x03\xe8")

	var out bytes.Buffer
	c := &Conn{Conn: fakeConn{w: &out}, br: bufio.NewReaderSize(&in, readBuffer)}
	for _, want := range []string{`{"type":"hello"}`, "fragmented", strings.Repeat("z", 70000)} {
		got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("got %.40q (%d bytes), want %.40q", got, len(got), want)
		}
	}
	if _, err := c.ReadMessage(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the close frame: %v", err)
	}
	for _, want := range []struct {
		op ws.OpCode
		p  string
	}{{ws.OpPong, "are you there"}, {ws.OpClose, "\x03\xe8"}} {
		f, err := ws.ReadFrame(&out)
		if err != nil {
			t.Fatal(err)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if f.Header.OpCode != want.op || !f.Header.Masked || string(f.Payload) != want.p {
			t.Fatalf("answer %v %q, want %v %q (masked)", f.Header.OpCode, f.Payload, want.op, want.p)
		}
	}
}

// A continuation without a message and an oversized header are errors.
func TestReadMessageRefuses(t *testing.T) {
	for name, h := range map[string]ws.Header{
		"continuation first": {Fin: true, OpCode: ws.OpContinuation, Length: 1},
		"too large":          {Fin: true, OpCode: ws.OpText, Length: maxMessage + 1},
	} {
		var in bytes.Buffer
		_ = ws.WriteHeader(&in, h)
		in.WriteString("x")
		c := &Conn{Conn: fakeConn{w: io.Discard}, br: bufio.NewReader(&in)}
		if _, err := c.ReadMessage(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

type fakeConn struct {
	net.Conn
	w io.Writer
}

func (f fakeConn) Write(p []byte) (int, error) { return f.w.Write(p) }
