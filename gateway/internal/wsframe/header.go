// Package wsframe reads and writes WebSocket frames (RFC 6455) directly on
// netpoll's no-copy buffers.
//
// gobwas/ws supplies the vocabulary (ws.Header, ws.OpCode, ws.StatusCode,
// ws.Cipher, ws.CheckHeader); this package does the byte work itself, because
// ws.ReadHeader and ws.WriteHeader need an io.Reader or io.Writer and an
// adapter over netpoll allocates on every call. ParseHeader and PutHeader
// work on plain byte slices, Decoder pulls whole frames out of a netpoll
// Reader (or anything with the same Len/Peek/Next/Skip methods) and keeps a
// partial frame in its own buffer until the rest arrives.
//
// Concurrency: the functions are pure. A Decoder belongs to one connection
// and is used by one goroutine at a time (netpoll runs at most one OnRequest
// per connection at a time).
package wsframe

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the longest frame header: 2 bytes, 8 bytes of extended
// length and 4 bytes of mask key.
const MaxHeaderSize = ws.MaxHeaderSize

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// ErrShort means the bytes given do not hold a whole header yet.
var ErrShort = errors.New("wsframe: header incomplete")

// CloseError is a protocol violation by the peer: the connection must be
// closed with Code.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string { return "wsframe: " + e.Reason }

// Prebuilt close errors, so rejecting a frame allocates nothing.
var (
	ErrUnmasked      = &CloseError{ws.StatusProtocolError, "client frame not masked"}
	ErrReservedBits  = &CloseError{ws.StatusProtocolError, "reserved bits set"}
	ErrReservedOp    = &CloseError{ws.StatusProtocolError, "reserved opcode"}
	ErrControlSize   = &CloseError{ws.StatusProtocolError, "control frame too long"}
	ErrControlFrag   = &CloseError{ws.StatusProtocolError, "fragmented control frame"}
	ErrBadLength     = &CloseError{ws.StatusProtocolError, "invalid payload length"}
	ErrTooBig        = &CloseError{ws.StatusMessageTooBig, "frame too large"}
	ErrMessageTooBig = &CloseError{ws.StatusMessageTooBig, "message too large"}
	ErrContinuation  = &CloseError{ws.StatusProtocolError, "unexpected continuation frame"}
	ErrInterleaved   = &CloseError{ws.StatusProtocolError, "data frame inside a fragmented message"}
	ErrInvalidUTF8   = &CloseError{ws.StatusInvalidFramePayloadData, "text is not valid UTF-8"}
	ErrBadClose      = &CloseError{ws.StatusProtocolError, "invalid close frame"}
	ErrBinary        = &CloseError{ws.StatusUnsupportedData, "binary messages are not supported"}
	// ErrText closes a connection that chose MessagePack (binary frames)
	// and sent a text message.
	ErrText = &CloseError{ws.StatusUnsupportedData, "this connection speaks MessagePack in binary messages"}
)

// HeaderLen returns the size of the header that starts with bytes b0 and b1.
func HeaderLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// ParseHeader decodes the frame header at the start of b. It returns the
// header and its size in bytes. If b is too short it returns ErrShort and the
// number of bytes needed (2 until the length bits are known). It does not
// validate the header; see Check.
func ParseHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 2, ErrShort
	}
	n = HeaderLen(b[0], b[1])
	if len(b) < n {
		return h, n, ErrShort
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x07
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	p := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		p = 4
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<63-1 {
			return h, n, ErrBadLength
		}
		h.Length = int64(u)
		p = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[p:p+4])
	}
	return h, n, nil
}

// Check validates a header received by a server: the frame must be masked,
// use no reserved bits or opcodes, obey the control-frame rules, and carry at
// most maxPayload bytes. A violation is returned as a *CloseError.
func Check(h ws.Header, maxPayload int64) error {
	switch {
	case h.Rsv != 0:
		return ErrReservedBits
	case h.OpCode.IsReserved():
		return ErrReservedOp
	case !h.Masked:
		return ErrUnmasked
	case h.OpCode.IsControl() && h.Length > MaxControlPayload:
		return ErrControlSize
	case h.OpCode.IsControl() && !h.Fin:
		return ErrControlFrag
	case h.Length > maxPayload:
		return ErrTooBig
	}
	return nil
}

// ServerHeaderLen is the size of an unmasked header for a payload of n bytes.
func ServerHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// PutHeader writes an unmasked (server) frame header for a final frame with
// opcode op and an n-byte payload into dst, which must have room for
// ServerHeaderLen(n) bytes, and returns the bytes written.
func PutHeader(dst []byte, op ws.OpCode, n int) int {
	dst[0] = 0x80 | byte(op)
	switch {
	case n < 126:
		dst[1] = byte(n)
		return 2
	case n <= 0xffff:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:10], uint64(n))
		return 10
	}
}

// AppendFrame appends a complete unmasked frame (header and payload) to dst.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	var hdr [MaxHeaderSize]byte
	n := PutHeader(hdr[:], op, len(payload))
	dst = append(dst, hdr[:n]...)
	return append(dst, payload...)
}

// FrameBuffer returns an empty buffer to append the payload of one
// unmasked frame to (size is a capacity hint), with room for the longest
// header kept in front; FinishFrame then writes the header there. The frame
// is built in one allocation and the payload is never copied.
func FrameBuffer(size int) []byte {
	return make([]byte, MaxHeaderSize, MaxHeaderSize+size)
}

// FinishFrame writes the header for the payload appended to a FrameBuffer
// and returns the frame (a suffix of buf).
func FinishFrame(buf []byte, op ws.OpCode) []byte {
	n := len(buf) - MaxHeaderSize
	start := MaxHeaderSize - ServerHeaderLen(n)
	PutHeader(buf[start:], op, n)
	return buf[start:]
}

// Frame returns a new slice holding one complete unmasked frame.
func Frame(op ws.OpCode, payload []byte) []byte {
	return AppendFrame(make([]byte, 0, ServerHeaderLen(len(payload))+len(payload)), op, payload)
}

// CloseFrame returns a close frame with code and reason (the reason is cut
// to fit the 125-byte control frame limit). A zero code gives an empty body.
func CloseFrame(code ws.StatusCode, reason string) []byte {
	if code == 0 {
		return Frame(ws.OpClose, nil)
	}
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	body := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(body, uint16(code))
	copy(body[2:], reason)
	return Frame(ws.OpClose, body)
}

// ParseClose validates the payload of a close frame received from a peer and
// returns its code (0 when the frame has no body). A malformed body returns
// ErrBadClose, a reason that is not UTF-8 ErrInvalidUTF8.
func ParseClose(p []byte) (ws.StatusCode, error) {
	switch {
	case len(p) == 0:
		return 0, nil
	case len(p) == 1:
		return 0, ErrBadClose
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !utf8.Valid(p[2:]) {
		return code, ErrInvalidUTF8
	}
	if !validCloseCode(code) {
		return code, ErrBadClose
	}
	return code, nil
}

// validCloseCode reports whether a peer may send code (RFC 6455 7.4): one
// defined by the RFC for the wire (1000-1003, 1007-1011), one registered
// with IANA since (1012 service restart, 1013 try again later, 1014 bad
// gateway), or one for libraries and applications (3000-4999). Codes
// below 1000, the reserved 1004-1006 and 1015, unassigned ones and those
// over 4999 are not.
func validCloseCode(code ws.StatusCode) bool {
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}
