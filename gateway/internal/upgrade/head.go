package upgrade

import (
	"bytes"
	"errors"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
)

// Source is the part of netpoll.Reader a Head reads from.
type Source interface {
	Len() int
	Peek(n int) ([]byte, error)
	Skip(n int) error
}

// ErrHeadTooLarge means the request head passed the size limit without
// ending.
var ErrHeadTooLarge = errors.New("upgrade: request head too large")

var headEnd = []byte("\r\n\r\n")

// Head collects a request head that may arrive over several reads.
//
// netpoll calls OnRequest for as long as unread input remains, so input
// cannot simply be left in netpoll's buffer until the head is complete
// (that spins a CPU). When the whole head is readable at once (the usual
// case) Feed hands it out in place, without copying; otherwise it moves
// the bytes into a pooled buffer and consumes them. Either way it consumes
// input only up to the end of the head: anything after it (frames a client
// sent without waiting for the 101) stays in the source.
//
// The zero Head is ready to use and costs 8 bytes.
type Head struct {
	b *[]byte // bytes of a head that arrived in pieces (nil if none)
}

// Feed consumes head bytes from src. Once the head ends with an empty line
// it returns the head and done; the slice is valid until src is released
// or Reset is called. It returns ErrHeadTooLarge once more than limit
// bytes arrived without the end.
func (h *Head) Feed(src Source, limit int) (head []byte, done bool, err error) {
	n := src.Len()
	if n == 0 {
		return nil, false, nil
	}
	have := 0
	if h.b != nil {
		have = len(*h.b)
	}
	// Never look at more than the limit allows (plus the terminator).
	n = min(n, limit+len(headEnd)-have)
	p, err := src.Peek(n)
	if err != nil {
		return nil, false, err
	}
	if h.b == nil {
		if i := bytes.Index(p, headEnd); i >= 0 {
			end := i + len(headEnd)
			if err := src.Skip(end); err != nil {
				return nil, false, err
			}
			if end > limit {
				return nil, false, ErrHeadTooLarge
			}
			return p[:end], true, nil
		}
		if err := src.Skip(n); err != nil {
			return nil, false, err
		}
		if n > limit {
			return nil, false, ErrHeadTooLarge
		}
		h.b = wsframe.AppendBuf(nil, p)
		return nil, false, nil
	}
	h.b = wsframe.AppendBuf(h.b, p)
	b := *h.b
	from := max(0, have-len(headEnd)+1)
	if i := bytes.Index(b[from:], headEnd); i >= 0 {
		end := from + i + len(headEnd)
		*h.b = b[:end]
		if err := src.Skip(end - have); err != nil {
			return nil, false, err
		}
		if end > limit {
			return nil, false, ErrHeadTooLarge
		}
		return *h.b, true, nil
	}
	if err := src.Skip(n); err != nil {
		return nil, false, err
	}
	if len(b) > limit {
		return nil, false, ErrHeadTooLarge
	}
	return nil, false, nil
}

// Len returns the number of bytes buffered from a head that arrived in
// pieces.
func (h *Head) Len() int {
	if h.b == nil {
		return 0
	}
	return len(*h.b)
}

// Reset returns the buffer to the pool.
func (h *Head) Reset() {
	if h.b != nil {
		wsframe.PutBuf(h.b)
		h.b = nil
	}
}
