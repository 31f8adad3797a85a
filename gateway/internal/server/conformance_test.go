package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// This file holds the RFC 6455 conformance cases: each case writes raw
// bytes to a real gateway and checks what comes back. Section numbers are
// RFC 6455's.

// rawFrame encodes a client frame bit by bit, so cases can break any rule.
type rawFrame struct {
	fin     bool
	rsv     byte // the three RSV bits, 0..7
	op      byte
	unmask  bool   // send without the mask bit
	length  int64  // <0: len(payload); otherwise the length field to claim
	len64   uint64 // if set, claim this 64-bit length (any value)
	payload []byte
}

func (f rawFrame) bytes() []byte {
	var b bytes.Buffer
	b0 := f.rsv<<4 | f.op&0x0f
	if f.fin {
		b0 |= 0x80
	}
	b.WriteByte(b0)
	n := int64(len(f.payload))
	if f.length >= 0 {
		n = f.length
	}
	mask := byte(0x80)
	if f.unmask {
		mask = 0
	}
	switch {
	case f.len64 != 0:
		b.WriteByte(mask | 127)
		_ = binary.Write(&b, binary.BigEndian, f.len64)
	case n < 126:
		b.WriteByte(mask | byte(n))
	case n <= 0xffff:
		b.WriteByte(mask | 126)
		_ = binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(mask | 127)
		_ = binary.Write(&b, binary.BigEndian, uint64(n))
	}
	p := append([]byte(nil), f.payload...)
	if !f.unmask {
		key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
		b.Write(key[:])
		ws.Cipher(p, key, 0)
	}
	b.Write(p)
	return b.Bytes()
}

func text(s string) rawFrame { return rawFrame{fin: true, op: 0x1, length: -1, payload: []byte(s)} }

func (c *client) raw(fs ...rawFrame) {
	c.t.Helper()
	var b bytes.Buffer
	for _, f := range fs {
		b.Write(f.bytes())
	}
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expectCloseThenEOF checks the close code and that the server then closes
// the TCP connection (section 7.1.1: the server closes first).
func (c *client) expectCloseThenEOF(code ws.StatusCode) {
	c.t.Helper()
	c.expectClose(code)
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c.r); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("server did not close the TCP connection after the close frame")
		}
	}
}

func TestConformanceFrames(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxFrame = 1024; c.MaxBody = 512 })
	long := strings.Repeat("x", 126)
	cases := []struct {
		name   string
		frames []rawFrame
		code   ws.StatusCode
	}{
		// 5.1: a server must close on an unmasked client frame.
		{"5.1 unmasked text", []rawFrame{{fin: true, op: 0x1, unmask: true, length: -1, payload: []byte(`{}`)}}, ws.StatusProtocolError},
		{"5.1 unmasked ping", []rawFrame{{fin: true, op: 0x9, unmask: true, length: -1}}, ws.StatusProtocolError},
		// 5.2: RSV bits without a negotiated extension.
		{"5.2 rsv1", []rawFrame{{fin: true, rsv: 4, op: 0x1, length: -1, payload: []byte("{}")}}, ws.StatusProtocolError},
		{"5.2 rsv2", []rawFrame{{fin: true, rsv: 2, op: 0x1, length: -1, payload: []byte("{}")}}, ws.StatusProtocolError},
		{"5.2 rsv3 on ping", []rawFrame{{fin: true, rsv: 1, op: 0x9, length: -1}}, ws.StatusProtocolError},
		// 5.2: reserved opcodes.
		{"5.2 opcode 3", []rawFrame{{fin: true, op: 0x3, length: -1}}, ws.StatusProtocolError},
		{"5.2 opcode 7", []rawFrame{{fin: true, op: 0x7, length: -1}}, ws.StatusProtocolError},
		{"5.2 opcode 11", []rawFrame{{fin: true, op: 0xb, length: -1}}, ws.StatusProtocolError},
		{"5.2 opcode 15", []rawFrame{{fin: true, op: 0xf, length: -1}}, ws.StatusProtocolError},
		// 5.2: the most significant bit of a 64-bit length must be 0.
		{"5.2 64-bit length with top bit", []rawFrame{{fin: true, op: 0x1, length: -1, len64: 1<<63 | 5}}, ws.StatusProtocolError},
		// 5.5: control frames carry at most 125 bytes and are never fragmented.
		{"5.5 ping of 126 bytes", []rawFrame{{fin: true, op: 0x9, length: -1, payload: []byte(long)}}, ws.StatusProtocolError},
		{"5.5 close of 126 bytes", []rawFrame{{fin: true, op: 0x8, length: -1, payload: append([]byte{3, 0xe8}, long[:124]...)}}, ws.StatusProtocolError},
		{"5.5 fragmented ping", []rawFrame{{fin: false, op: 0x9, length: -1, payload: []byte("a")}}, ws.StatusProtocolError},
		{"5.5 fragmented pong", []rawFrame{{fin: false, op: 0xa, length: -1}}, ws.StatusProtocolError},
		// 5.4: fragmentation rules.
		{"5.4 continuation without a start", []rawFrame{{fin: true, op: 0x0, length: -1, payload: []byte("x")}}, ws.StatusProtocolError},
		{"5.4 new message inside a fragmented one", []rawFrame{{fin: false, op: 0x1, length: -1, payload: []byte(`{"ty`)}, text(`{}`)}, ws.StatusProtocolError},
		// Size caps: a frame or a reassembled message over the cap is 1009.
		{"10.4 frame over the cap", []rawFrame{{fin: true, op: 0x1, length: -1, payload: bytes.Repeat([]byte("x"), 1025)}}, ws.StatusMessageTooBig},
		{"10.4 frame claiming a huge length", []rawFrame{{fin: true, op: 0x1, length: 1 << 40}}, ws.StatusMessageTooBig},
		{"10.4 message over the cap", []rawFrame{
			{fin: false, op: 0x1, length: -1, payload: bytes.Repeat([]byte("x"), 600)},
			{fin: true, op: 0x0, length: -1, payload: bytes.Repeat([]byte("x"), 600)},
		}, ws.StatusMessageTooBig},
		// 8.1: text must be UTF-8, checked over the whole message.
		{"8.1 invalid UTF-8", []rawFrame{text("\xff\xfe")}, ws.StatusInvalidFramePayloadData},
		{"8.1 truncated sequence", []rawFrame{text("ok \xe2\x82")}, ws.StatusInvalidFramePayloadData},
		{"8.1 invalid across fragments", []rawFrame{
			{fin: false, op: 0x1, length: -1, payload: []byte("caf\xc3")},
			{fin: true, op: 0x0, length: -1, payload: []byte("\x28")},
		}, ws.StatusInvalidFramePayloadData},
		// Binary messages on a connection that did not choose MessagePack
		// (the subprotocol gochat.msgpack): 1003, unsupported data.
		{"binary message", []rawFrame{{fin: true, op: 0x2, length: -1, payload: []byte{1, 2}}}, ws.StatusUnsupportedData},
		// 5.5.1 / 7.4: close frame bodies.
		{"7.4 close with a 1-byte body", []rawFrame{{fin: true, op: 0x8, length: -1, payload: []byte{3}}}, ws.StatusProtocolError},
		{"7.4 close code 999", []rawFrame{closeFrame(999, "")}, ws.StatusProtocolError},
		{"7.4 close code 1004", []rawFrame{closeFrame(1004, "")}, ws.StatusProtocolError},
		{"7.4 close code 1005", []rawFrame{closeFrame(1005, "")}, ws.StatusProtocolError},
		{"7.4 close code 1006", []rawFrame{closeFrame(1006, "")}, ws.StatusProtocolError},
		{"7.4 close code 1015", []rawFrame{closeFrame(1015, "")}, ws.StatusProtocolError},
		{"7.4 close code 1016", []rawFrame{closeFrame(1016, "")}, ws.StatusProtocolError},
		{"7.4 close code 2999", []rawFrame{closeFrame(2999, "")}, ws.StatusProtocolError},
		{"7.4 close reason not UTF-8", []rawFrame{closeFrame(1000, "\xff")}, ws.StatusInvalidFramePayloadData},
		// 5.5.1: the close handshake echoes a valid code.
		{"5.5.1 close 1000 echoed", []rawFrame{closeFrame(1000, "bye")}, ws.StatusNormalClosure},
		{"5.5.1 close 1001 echoed", []rawFrame{closeFrame(1001, "")}, ws.StatusGoingAway},
		{"5.5.1 close 3000 echoed", []rawFrame{closeFrame(3000, "app")}, 3000},
		{"5.5.1 close 4999 echoed", []rawFrame{closeFrame(4999, "")}, 4999},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := connect(t, e, "alice")
			c.raw(tc.frames...)
			c.expectCloseThenEOF(tc.code)
		})
	}
}

func closeFrame(code uint16, reason string) rawFrame {
	p := binary.BigEndian.AppendUint16(nil, code)
	return rawFrame{fin: true, op: 0x8, length: -1, payload: append(p, reason...)}
}

// Valid traffic that must not close the connection.
func TestConformanceValid(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxFrame = 1024; c.MaxBody = 512 })
	c, _ := connect(t, e, "alice")
	// 5.5.2/5.5.3: ping of the largest size gets a pong with the same
	// payload; an unsolicited pong gets nothing.
	p125 := bytes.Repeat([]byte("p"), 125)
	c.raw(rawFrame{fin: true, op: 0x9, length: -1, payload: p125}, rawFrame{fin: true, op: 0xa, length: -1, payload: []byte("hb")})
	f, err := c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpPong || !bytes.Equal(f.Payload, p125) {
		t.Fatalf("pong %+v %v", f.Header, err)
	}
	// An empty ping.
	c.raw(rawFrame{fin: true, op: 0x9, length: -1})
	if f, err := c.readFrame(5 * time.Second); err != nil || f.Header.OpCode != ws.OpPong || len(f.Payload) != 0 {
		t.Fatalf("empty pong %+v %v", f.Header, err)
	}
	// 5.4: a message in fragments with a control frame between them, a
	// UTF-8 sequence split over two fragments, and an empty final fragment.
	c.raw(
		rawFrame{fin: false, op: 0x1, length: -1, payload: []byte("{\"type\":\"ping\",\"rid\":\"caf\xc3")},
		rawFrame{fin: true, op: 0x9, length: -1, payload: []byte("mid")},
		rawFrame{fin: false, op: 0x0, length: -1, payload: []byte("\xa9\"}")},
		rawFrame{fin: true, op: 0x0, length: -1},
	)
	if f, err := c.readFrame(5 * time.Second); err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
		t.Fatalf("pong between fragments %+v %v", f.Header, err)
	}
	var pong struct {
		Type string `json:"type"`
		RID  string `json:"rid"`
	}
	c.readJSON(&pong)
	if pong.Type != "pong" || pong.RID != "café" {
		t.Fatalf("reassembled message answered with %+v", pong)
	}
	// 5.2: lengths in the 16-bit form, and a message exactly at the cap.
	body := `{"type":"ping","rid":"r"}` + strings.Repeat(" ", 1024-len(`{"type":"ping","rid":"r"}`))
	c.raw(text(body))
	c.readJSON(&pong)
	if pong.RID != "r" {
		t.Fatalf("pong %+v", pong)
	}
	// A close without a body is answered with a close without a body.
	c.raw(rawFrame{fin: true, op: 0x8, length: -1})
	f, err = c.readFrame(5 * time.Second)
	if err != nil || f.Header.OpCode != ws.OpClose || len(f.Payload) != 0 {
		t.Fatalf("close reply %+v %q %v", f.Header, f.Payload, err)
	}
}

// Frames the client sends right behind its request, before the 101,
// are read once the connection opens.
func TestFramesBehindTheRequest(t *testing.T) {
	e := start(t, nil)
	tok := token(t, "alice", "phone", time.Hour)
	req := "GET /ws?token=" + tok + " HTTP/1.1\r\n" + upgradeHeaders
	ping := rawFrame{fin: true, op: 0x9, length: -1, payload: []byte("early")}
	br, _ := rawRequest(t, e.addr, req+string(ping.bytes()))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("resp %v err %v", resp, err)
	}
	f, err := ws.ReadFrame(br)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "early" {
		t.Fatalf("frame %+v %v, want the pong", f.Header, err)
	}
}

// Section 4.2.1/4.2.2: a bad opening handshake gets an HTTP error and no
// upgrade, and the connection is closed.
func TestConformanceHandshake(t *testing.T) {
	e := start(t, nil)
	tok := token(t, "alice", "phone", time.Hour)
	target := "/ws?token=" + tok
	const (
		host    = "Host: x\r\n"
		upg     = "Upgrade: websocket\r\n"
		conn    = "Connection: Upgrade\r\n"
		key     = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		version = "Sec-WebSocket-Version: 13\r\n"
	)
	cases := []struct {
		name   string
		req    string
		status int
	}{
		{"wrong version", "GET " + target + " HTTP/1.1\r\n" + host + upg + conn + key + "Sec-WebSocket-Version: 8\r\n\r\n", http.StatusUpgradeRequired},
		{"missing version", "GET " + target + " HTTP/1.1\r\n" + host + upg + conn + key + "\r\n", http.StatusBadRequest},
		{"missing key", "GET " + target + " HTTP/1.1\r\n" + host + upg + conn + version + "\r\n", http.StatusBadRequest},
		{"key not 16 bytes", "GET " + target + " HTTP/1.1\r\n" + host + upg + conn + "Sec-WebSocket-Key: c2hvcnQ=\r\n" + version + "\r\n", http.StatusBadRequest},
		{"not an upgrade", "GET " + target + " HTTP/1.1\r\n" + host + "\r\n", http.StatusBadRequest},
		{"upgrade to something else", "GET " + target + " HTTP/1.1\r\n" + host + "Upgrade: h2c\r\n" + conn + key + version + "\r\n", http.StatusBadRequest},
		{"no Connection: Upgrade", "GET " + target + " HTTP/1.1\r\n" + host + upg + "Connection: keep-alive\r\n" + key + version + "\r\n", http.StatusBadRequest},
		{"no Host", "GET " + target + " HTTP/1.1\r\n" + upg + conn + key + version + "\r\n", http.StatusBadRequest},
		{"POST", "POST " + target + " HTTP/1.1\r\n" + host + upg + conn + key + version + "\r\n", http.StatusMethodNotAllowed},
		{"HTTP/1.0", "GET " + target + " HTTP/1.0\r\n" + host + upg + conn + key + version + "\r\n", http.StatusHTTPVersionNotSupported},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br, _ := rawRequest(t, e.addr, tc.req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" {
				t.Fatal("bad handshake was upgraded")
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection still open: %v", err)
			}
		})
	}
}

// A client that trickles its request head (slowloris) is dropped when the
// handshake timeout runs out, however recently it sent a byte.
func TestSlowlorisDropped(t *testing.T) {
	e := start(t, func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.SweepInterval = 20 * time.Millisecond
	})
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("z", 200)
	start := time.Now()
	for i := 0; i < len(req); i++ {
		if _, err := conn.Write([]byte{req[i]}); err != nil {
			break // dropped
		}
		time.Sleep(10 * time.Millisecond)
		if time.Since(start) > 5*time.Second {
			t.Fatal("still connected after 5 s of trickling")
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("server answered a request that never ended")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection not dropped")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dropped after %v", d)
	}
}
