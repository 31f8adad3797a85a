package upgrade

import (
	"bytes"
	"errors"
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
// (that spins a CPU); Feed moves the bytes it reads into the Head instead,
// up to the end of the head and no further: anything after it (frames a
// client sent without waiting for the 101) stays in the source.
type Head struct {
	b []byte
}

// Feed consumes head bytes from src. It reports true once the head ends
// with an empty line; Bytes then holds it. It returns ErrHeadTooLarge once
// more than limit bytes arrived without the end.
func (h *Head) Feed(src Source, limit int) (bool, error) {
	n := src.Len()
	if n == 0 {
		return false, nil
	}
	// Never look at more than the limit allows (plus the terminator).
	n = min(n, limit+len(headEnd)-len(h.b))
	p, err := src.Peek(n)
	if err != nil {
		return false, err
	}
	old := len(h.b)
	if h.b == nil {
		h.b = make([]byte, 0, min(limit, 1024))
	}
	h.b = append(h.b, p...)
	from := max(0, old-len(headEnd)+1)
	if i := bytes.Index(h.b[from:], headEnd); i >= 0 {
		end := from + i + len(headEnd)
		h.b = h.b[:end]
		if err := src.Skip(end - old); err != nil {
			return false, err
		}
		if end > limit {
			return false, ErrHeadTooLarge
		}
		return true, nil
	}
	if err := src.Skip(n); err != nil {
		return false, err
	}
	if len(h.b) > limit {
		return false, ErrHeadTooLarge
	}
	return false, nil
}

// Bytes returns the collected head.
func (h *Head) Bytes() []byte { return h.b }

// Len returns the number of bytes collected.
func (h *Head) Len() int { return len(h.b) }

// Reset frees the buffer.
func (h *Head) Reset() { h.b = nil }
