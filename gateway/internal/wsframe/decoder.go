package wsframe

import (
	"errors"

	"github.com/gobwas/ws"
)

// Source is the part of netpoll.Reader the decoder reads from. Slices it
// returns stay valid until the owner releases the buffer (netpoll's
// Release), so a frame must be handled before that.
type Source interface {
	Len() int
	Peek(n int) ([]byte, error)
	Next(n int) ([]byte, error)
	Skip(n int) error
}

// ErrMore means every readable byte was consumed and the frame in progress
// is not complete: call Next again when more input arrives.
var ErrMore = errors.New("wsframe: need more input")

// Decoder pulls client frames out of a Source.
//
// netpoll calls OnRequest again and again while unread input remains, so a
// connection handler must consume everything readable on each call. When a
// frame is complete in the input (the usual case) the decoder hands out its
// payload in place, unmasked, without copying. When only part of a frame has
// arrived, the decoder moves those bytes into its own small header array or a
// pooled payload buffer and consumes them; the rest of the frame is appended
// as it arrives.
//
// The zero Decoder is ready to use. It costs 48 bytes at rest.
type Decoder struct {
	head ws.Header // header of the frame whose payload is pending
	body *[]byte   // pending payload (nil unless a payload is being assembled)
	hdr  [MaxHeaderSize]byte
	nhdr uint8 // bytes of a partial header held in hdr
	// done marks body as handed out by the last Next: recycle it first.
	done bool
}

// Next returns the next complete frame. The payload is unmasked in place
// and valid until the next call of Next or Reset and until the Source is
// released. It returns ErrMore once the input is used up, or a *CloseError
// when the peer broke the protocol (the connection must then be closed).
func (d *Decoder) Next(src Source, maxPayload int64) (ws.Header, []byte, error) {
	if d.done {
		putBuf(d.body)
		d.body, d.done = nil, false
	}
	if d.body != nil {
		return d.fillBody(src)
	}
	avail := src.Len()
	if d.nhdr > 0 || (avail > 0 && avail < MaxHeaderSize) {
		if done, err := d.fillHeader(src); !done {
			return ws.Header{}, nil, err
		}
		h, _, err := ParseHeader(d.hdr[:d.nhdr])
		d.nhdr = 0
		if err == nil {
			err = Check(h, maxPayload)
		}
		if err != nil {
			return h, nil, err
		}
		return d.payload(src, h)
	}
	if avail == 0 {
		return ws.Header{}, nil, ErrMore
	}
	// Fast path: at least MaxHeaderSize bytes readable, so the whole header
	// is there; Peek is zero-copy unless the header straddles two buffer nodes.
	b, err := src.Peek(MaxHeaderSize)
	if err != nil {
		return ws.Header{}, nil, err
	}
	h, n, err := ParseHeader(b)
	if err == nil {
		err = Check(h, maxPayload)
	}
	if err != nil {
		return h, nil, err
	}
	if err := src.Skip(n); err != nil {
		return h, nil, err
	}
	return d.payload(src, h)
}

// fillHeader moves header bytes from src into d.hdr until the header is
// whole. It reports whether it is.
func (d *Decoder) fillHeader(src Source) (bool, error) {
	for {
		need := 2
		if d.nhdr >= 2 {
			need = HeaderLen(d.hdr[0], d.hdr[1])
		}
		if int(d.nhdr) >= need {
			return true, nil
		}
		take := min(need-int(d.nhdr), src.Len())
		if take == 0 {
			return false, ErrMore
		}
		p, err := src.Next(take)
		if err != nil {
			return false, err
		}
		copy(d.hdr[d.nhdr:], p)
		d.nhdr += uint8(take)
	}
}

// payload returns the payload of h if it is all readable, or starts
// assembling it in a pooled buffer.
func (d *Decoder) payload(src Source, h ws.Header) (ws.Header, []byte, error) {
	n := int(h.Length)
	if src.Len() >= n {
		var p []byte
		if n > 0 {
			var err error
			if p, err = src.Next(n); err != nil {
				return h, nil, err
			}
			ws.Cipher(p, h.Mask, 0)
		}
		return h, p, nil
	}
	d.head = h
	d.body = getBuf(n)
	return d.fillBody(src)
}

func (d *Decoder) fillBody(src Source) (ws.Header, []byte, error) {
	b := *d.body
	take := min(int(d.head.Length)-len(b), src.Len())
	if take > 0 {
		p, err := src.Next(take)
		if err != nil {
			return d.head, nil, err
		}
		b = append(b, p...)
		*d.body = b
	}
	if len(b) < int(d.head.Length) {
		return d.head, nil, ErrMore
	}
	ws.Cipher(b, d.head.Mask, 0)
	d.done = true
	return d.head, b, nil
}

// Reset drops any partial frame and returns pooled memory.
func (d *Decoder) Reset() {
	if d.body != nil {
		putBuf(d.body)
	}
	*d = Decoder{}
}

// Pending reports whether part of a frame is buffered.
func (d *Decoder) Pending() bool { return d.nhdr > 0 || (d.body != nil && !d.done) }
