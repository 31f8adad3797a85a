package session

import (
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// OnReadable processes everything readable on the connection. The server
// calls it from netpoll's OnRequest; it always consumes all input (or
// closes the connection), as netpoll requires.
func (s *Session) OnReadable() error {
	r := s.conn.Reader()
	defer func() { _ = r.Release() }()
	s.lastRead.Store(s.env.Now())
	consumed := 0
	for {
		switch s.State() {
		case StateHandshake:
			head, done, err := s.head.Feed(r, s.env.MaxHead)
			if err != nil {
				_ = r.Skip(r.Len())
				s.head.Reset()
				s.env.Handler.HeadTooLarge(s)
				return nil
			}
			if !done {
				return nil
			}
			s.env.Handler.Handshake(s, head)
			s.head.Reset()
			// Anything after the head is already WebSocket frames.
		case StateRegistering, StateOpen:
			h, p, err := s.dec.Next(r, s.env.MaxFrame)
			if err == wsframe.ErrMore {
				return nil
			}
			if err != nil {
				var ce *wsframe.CloseError
				if errors.As(err, &ce) {
					s.CloseWith(uint16(ce.Code), ce.Reason)
				} else {
					s.Kill()
				}
				_ = r.Skip(r.Len())
				return nil
			}
			s.env.Obs.FrameIn()
			if h.OpCode.IsControl() || h.OpCode == ws.OpContinuation {
				// Messages are counted by the handler (Allow); the rest
				// here, against the same limit. A control frame past it
				// is dropped unanswered (a close still closes).
				if !s.Allow(s.env.FrameRate) && h.OpCode != ws.OpClose {
					if s.State() == StateClosing {
						_ = r.Skip(r.Len())
						return nil
					}
					if h.OpCode.IsControl() {
						break
					}
				}
			}
			s.frame(h, p)
			// netpoll frees what was read only at Release: a client that
			// keeps the input coming would otherwise keep this loop, and
			// every byte it ever sent, alive. The decoder holds no
			// reference into the buffer between frames.
			if consumed += frameBytes(h); consumed >= releaseEvery {
				_ = r.Release()
				consumed = 0
				if b := s.env.MaxBacklog; b > 0 && r.Len() > b && s.State() != StateClosing {
					s.env.Obs.Flooded()
					s.CloseWith(uint16(ws.StatusPolicyViolation), "sending faster than served")
				}
			}
		default:
			// Closing: the client's remaining input no longer matters.
			_ = r.Skip(r.Len())
			return nil
		}
	}
}

// frame handles one frame whose payload p is valid only during the call.
func (s *Session) frame(h ws.Header, p []byte) {
	switch h.OpCode {
	case ws.OpText, ws.OpBinary:
		switch {
		case s.msg != nil:
			s.fail(wsframe.ErrInterleaved)
		case h.OpCode == ws.OpBinary && !s.Binary():
			s.fail(wsframe.ErrBinary)
		case h.OpCode == ws.OpText && s.Binary():
			s.fail(wsframe.ErrText)
		case h.Fin:
			s.deliver(p)
		default:
			s.msg = wsframe.AppendBuf(nil, p)
		}
	case ws.OpContinuation:
		switch {
		case s.msg == nil:
			s.fail(wsframe.ErrContinuation)
		case int64(len(*s.msg)+len(p)) > s.env.MaxFrame:
			s.fail(wsframe.ErrMessageTooBig)
		default:
			s.msg = wsframe.AppendBuf(s.msg, p)
			if h.Fin {
				m := s.msg
				s.msg = nil
				s.deliver(*m)
				wsframe.PutBuf(m)
			}
		}
	case ws.OpPing:
		// The payload lives in netpoll's buffer until Release: the pong
		// gets its own copy.
		_ = s.Send(wsframe.Frame(ws.OpPong, p))
	case ws.OpPong:
		// Only proof of life; lastRead is already updated.
	case ws.OpClose:
		code, err := wsframe.ParseClose(p)
		if err != nil {
			var ce *wsframe.CloseError
			errors.As(err, &ce)
			s.fail(ce)
			return
		}
		// Echo the client's code and close.
		s.CloseWith(uint16(code), "")
	}
}

func (s *Session) fail(ce *wsframe.CloseError) {
	if s.msg != nil {
		wsframe.PutBuf(s.msg)
		s.msg = nil
	}
	s.CloseWith(uint16(ce.Code), ce.Reason)
}

// deliver hands one complete message to the handler; text messages must
// be valid UTF-8 (a binary session's MessagePack is the handler's to
// check).
func (s *Session) deliver(text []byte) {
	if !s.Binary() && !utf8.Valid(text) {
		s.fail(wsframe.ErrInvalidUTF8)
		return
	}
	s.env.Handler.Message(s, text)
}

func closeFrame(code uint16, reason string) []byte {
	return wsframe.CloseFrame(ws.StatusCode(code), reason)
}

// releaseEvery is how many bytes of frames OnReadable handles between
// two releases of netpoll's input buffer.
const releaseEvery = 64 << 10

// frameBytes is about the size of a client frame on the wire with header
// h (the shortest masked header, 6 bytes, and the payload).
func frameBytes(h ws.Header) int { return 6 + int(h.Length) }
