package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/pkg/wsclient"
)

// wsClient is a plain WebSocket client for tests: one goroutine reads
// frames into a buffer that the test waits on.
type wsClient struct {
	t    *testing.T
	name string
	conn net.Conn
	// binary: the connection chose MessagePack (protocol.SubprotocolMsgpack);
	// frames are converted to and from JSON here, so tests read and write
	// JSON either way.
	binary bool

	mu     sync.Mutex
	frames []frame
	closed *wsutil.ClosedError
	err    error
	notify chan struct{}
}

// frame is one decoded server frame.
type frame struct {
	Type string
	Raw  []byte
}

func (f frame) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(f.Raw, v); err != nil {
		t.Fatalf("decode %s: %v", f.Raw, err)
	}
}

func dial(ctx context.Context, url string, protocols ...string) (net.Conn, string, error) {
	conn, br, hs, err := ws.Dialer{Timeout: 5 * time.Second, Protocols: protocols}.Dial(ctx, url)
	if err != nil {
		return nil, "", err
	}
	return wsclient.Buffered(conn, br), hs.Protocol, nil // hello may have come with the 101
}

// connectMsgpack is connect for a client that speaks MessagePack.
func connectMsgpack(t *testing.T, name, url string) *wsClient {
	t.Helper()
	c, err := tryConnectWith(t, name, url, protocol.SubprotocolMsgpack)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	if !c.binary {
		t.Fatalf("%s: the gateway did not choose %s", name, protocol.SubprotocolMsgpack)
	}
	return c
}

func connect(t *testing.T, name, url string) *wsClient {
	t.Helper()
	c, err := tryConnect(t, name, url)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	return c
}

// tryConnect is connect that returns the dial error.
func tryConnect(t *testing.T, name, url string) (*wsClient, error) {
	return tryConnectWith(t, name, url)
}

// tryConnectWith is tryConnect asking for subprotocols.
func tryConnectWith(t *testing.T, name, url string, protocols ...string) (*wsClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, chosen, err := dial(ctx, url, protocols...)
	if err != nil {
		return nil, err
	}
	c := &wsClient{t: t, name: name, conn: conn, notify: make(chan struct{}, 1),
		binary: chosen == protocol.SubprotocolMsgpack}
	go c.read()
	t.Cleanup(func() { conn.Close() })
	return c, nil
}

// poll is waitFor without failing the test: it reports a timeout or the
// end of the connection as an error.
func (c *wsClient) poll(d time.Duration, match func(frame) bool) (frame, error) {
	deadline := time.After(d)
	for {
		c.mu.Lock()
		for i, f := range c.frames {
			if match(f) {
				c.frames = append(c.frames[:i], c.frames[i+1:]...)
				c.mu.Unlock()
				return f, nil
			}
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return frame{}, err
		}
		select {
		case <-c.notify:
		case <-deadline:
			return frame{}, errors.New("timeout")
		}
	}
}

// drain removes and returns the buffered frames of type typ.
func (c *wsClient) drain(typ string) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out, keep []frame
	for _, f := range c.frames {
		if f.Type == typ {
			out = append(out, f)
		} else {
			keep = append(keep, f)
		}
	}
	c.frames = keep
	return out
}

// trySend is sendJSON that returns the write error.
func (c *wsClient) trySend(v any) error {
	op, b, err := c.encode(v)
	if err != nil {
		return err
	}
	return wsutil.WriteClientMessage(c.conn, op, b)
}

// encode returns v as this connection sends it: JSON in a text frame, or
// MessagePack in a binary one.
func (c *wsClient) encode(v any) (ws.OpCode, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil || !c.binary {
		return ws.OpText, b, err
	}
	b, err = protocol.AppendMsgpack(nil, b)
	return ws.OpBinary, b, err
}

// read decodes server frames until the connection ends. It handles
// control frames itself so that a close frame is recorded even when the
// reply to it cannot be written (the server may already have gone).
func (c *wsClient) read() {
	var (
		msg []byte
		op  ws.OpCode // of the message being read
	)
	for {
		f, err := ws.ReadFrame(c.conn)
		if err != nil {
			c.finish(nil, err)
			return
		}
		switch {
		case f.Header.OpCode == ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			_ = ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
			c.finish(&wsutil.ClosedError{Code: code, Reason: reason}, errors.New("closed by server"))
			return
		case f.Header.OpCode == ws.OpPing:
			_ = ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewPongFrame(f.Payload)))
			continue
		case f.Header.OpCode.IsControl():
			continue
		}
		if f.Header.OpCode != ws.OpContinuation {
			op = f.Header.OpCode
		}
		msg = append(msg, f.Payload...)
		if !f.Header.Fin {
			continue
		}
		data := msg
		msg = nil
		if op == ws.OpBinary {
			if !c.binary {
				c.finish(nil, fmt.Errorf("server sent a binary frame to a JSON client: % x", data))
				return
			}
			js, err := protocol.AppendJSONFromMsgpack(nil, data)
			if err != nil {
				c.finish(nil, fmt.Errorf("server sent bad MessagePack % x: %w", data, err))
				return
			}
			data = js
		} else if c.binary {
			c.finish(nil, fmt.Errorf("server sent a text frame to a MessagePack client: %s", data))
			return
		}
		var env struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(data, &env)
		c.mu.Lock()
		c.frames = append(c.frames, frame{Type: env.Type, Raw: data})
		c.mu.Unlock()
		c.wake()
	}
}

func (c *wsClient) finish(closed *wsutil.ClosedError, err error) {
	c.mu.Lock()
	c.closed, c.err = closed, err
	c.mu.Unlock()
	c.wake()
}

func (c *wsClient) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// waitFor returns (and removes) the first buffered frame matching match,
// waiting up to d.
func (c *wsClient) waitFor(d time.Duration, what string, match func(frame) bool) frame {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		for i, f := range c.frames {
			if match(f) {
				c.frames = append(c.frames[:i], c.frames[i+1:]...)
				c.mu.Unlock()
				return f
			}
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("%s: connection ended while waiting for %s: %v", c.name, what, err)
		}
		select {
		case <-c.notify:
		case <-deadline:
			c.mu.Lock()
			var got []string
			for _, f := range c.frames {
				got = append(got, string(f.Raw))
			}
			c.mu.Unlock()
			c.t.Fatalf("%s: no %s within %v; buffered: %v", c.name, what, d, got)
		}
	}
}

func (c *wsClient) waitType(d time.Duration, typ string) frame {
	c.t.Helper()
	return c.waitFor(d, typ, func(f frame) bool { return f.Type == typ })
}

// pending returns the buffered frames of type typ without removing them.
func (c *wsClient) pending(typ string) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []frame
	for _, f := range c.frames {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

// waitClosed waits for the server's close frame and returns its code.
func (c *wsClient) waitClosed(d time.Duration) ws.StatusCode {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		closed, err := c.closed, c.err
		c.mu.Unlock()
		if closed != nil {
			return closed.Code
		}
		if err != nil {
			c.t.Fatalf("%s: connection ended without a close frame: %v", c.name, err)
		}
		select {
		case <-c.notify:
		case <-deadline:
			c.t.Fatalf("%s: not closed within %v", c.name, d)
		}
	}
}

func (c *wsClient) sendJSON(v any) {
	c.t.Helper()
	op, b, err := c.encode(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(op, b)
}

func (c *wsClient) sendRaw(op ws.OpCode, b []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, op, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *wsClient) close() { _ = c.conn.Close() }
