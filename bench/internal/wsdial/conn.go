package wsdial

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/pkg/wsclient"
)

// Conn is a bench client's WebSocket connection, built to cost the box as
// little as a real client on another machine would (the load generator
// shares the CPUs with the servers it measures):
//
//   - WriteText sends a whole frame, header, mask and payload, with one
//     write(2). wsutil.WriteClientText writes the header and the payload
//     separately, which over a TCP_NODELAY socket is two segments and,
//     on the gateway's side, often two wake-ups for one frame.
//   - ReadMessage reads through a buffer, so one read(2) usually brings a
//     whole frame or several; wsutil.ReadServerData reads the header and
//     the payload of each frame with separate calls.
//
// Writes may come from several goroutines; reads from one at a time.
type Conn struct {
	net.Conn
	br *bufio.Reader

	wmu  sync.Mutex
	wbuf []byte

	msg []byte // the message ReadMessage returned last, reused

	// binary: the gateway chose MessagePack (protocol.SubprotocolMsgpack);
	// WriteJSON and ReadJSON convert.
	binary bool
	wjs    []byte // WriteJSON's MessagePack, reused (under wmu)
	rjs    []byte // ReadJSON's JSON, reused

	// at is the kernel's receive time (unix nanoseconds) of the latest
	// read from the socket; 0 if none was stamped.
	at int64
}

// Arrival is when the data that completed the message ReadMessage (or
// ReadJSON) returned last reached this client's socket, by the kernel's
// receive timestamp: a client that waited for a CPU before reading does
// not add its wait. (bufio reads again only when a message needs more
// bytes, so the latest read is the one that brought the message's last
// byte.) It is the zero time when the kernel gave no timestamp: not on
// Linux, or the message came with the handshake's response.
func (c *Conn) Arrival() time.Time { return c.ArrivalOr(time.Time{}) }

// ArrivalOr is Arrival, or now when the kernel gave no timestamp.
func (c *Conn) ArrivalOr(now time.Time) time.Time {
	if c.at == 0 {
		return now
	}
	return time.Unix(0, c.at)
}

// Binary reports whether the connection speaks MessagePack.
func (c *Conn) Binary() bool { return c.binary }

// WriteJSON sends the JSON object p as the connection speaks: as it is in a
// text frame, or as MessagePack in a binary frame.
func (c *Conn) WriteJSON(p []byte) error {
	if !c.binary {
		return c.WriteText(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	if c.wjs, err = protocol.AppendMsgpack(c.wjs[:0], p); err != nil {
		return err
	}
	return c.writeFrameLocked(ws.OpBinary, c.wjs)
}

// ReadJSON is ReadMessage returning the JSON form of a MessagePack
// connection's messages. The slice is valid until the next call.
func (c *Conn) ReadJSON() ([]byte, error) {
	data, err := c.ReadMessage()
	if err != nil || !c.binary {
		return data, err
	}
	c.rjs, err = protocol.AppendJSONFromMsgpack(c.rjs[:0], data)
	return c.rjs, err
}

// readBuffer is the read buffer per connection: a push frame with a
// 100-byte body is about 300 bytes.
const readBuffer = 4096

// maxMessage bounds a message ReadMessage accepts (the gateway's frames
// are far smaller).
const maxMessage = 16 << 20

// newConn wraps a dialed connection; br is what ws.Dialer.Dial returned
// (it holds the bytes that came with the 101, if any).
func newConn(c net.Conn, br *bufio.Reader) *Conn {
	conn := &Conn{Conn: c}
	conn.br = bufio.NewReaderSize(wsclient.Buffered(stampReads(c, &conn.at), br), readBuffer)
	return conn
}

// WriteText sends p as one masked text frame.
func (c *Conn) WriteText(p []byte) error { return c.writeFrame(ws.OpText, p) }

// writeFrame sends p as one masked frame of opcode op, with one write.
func (c *Conn) writeFrame(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeFrameLocked(op, p)
}

// writeFrameLocked is writeFrame with wmu held.
func (c *Conn) writeFrameLocked(op ws.OpCode, p []byte) error {
	c.wbuf = AppendClientFrame(c.wbuf[:0], op, p)
	_, err := c.Conn.Write(c.wbuf)
	return err
}

// AppendClientFrame appends p as one final, masked client frame of opcode
// op to dst.
func AppendClientFrame(dst []byte, op ws.OpCode, p []byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	dst = append(dst, mask[:]...)
	off := len(dst)
	dst = append(dst, p...)
	ws.Cipher(dst[off:], mask, 0)
	return dst
}

// ErrClosed is returned by ReadMessage when the server closed the
// WebSocket (after the close frame has been answered).
var ErrClosed = errors.New("websocket closed by the server")

// ReadMessage returns the next text or binary message, reassembled from
// its fragments. It answers pings with pongs and a close frame with a
// close frame. The returned slice is valid until the next call.
func (c *Conn) ReadMessage() ([]byte, error) {
	c.msg = c.msg[:0]
	inMessage := false
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if h.Length > maxMessage || int64(len(c.msg))+h.Length > maxMessage {
			return nil, fmt.Errorf("websocket message over %d bytes", maxMessage)
		}
		if h.OpCode.IsControl() {
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				return nil, err
			}
			if h.Masked {
				ws.Cipher(payload, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeFrame(ws.OpPong, payload); err != nil {
					return nil, err
				}
			case ws.OpClose:
				_ = c.writeFrame(ws.OpClose, payload)
				return nil, ErrClosed
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && !inMessage:
			return nil, errors.New("websocket continuation frame without a message")
		case h.OpCode != ws.OpContinuation && inMessage:
			return nil, errors.New("websocket message started inside another")
		}
		inMessage = true
		off := len(c.msg)
		c.msg = slices.Grow(c.msg, int(h.Length))[:off+int(h.Length)]
		if _, err := io.ReadFull(c.br, c.msg[off:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(c.msg[off:], h.Mask, 0)
		}
		if h.Fin {
			return c.msg, nil
		}
	}
}
