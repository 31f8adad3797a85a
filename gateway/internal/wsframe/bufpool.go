package wsframe

import (
	"math/bits"
	"sync"
)

// Payload buffers for partial frames and fragmented messages come from
// power-of-two size classes, 64 B to 1 MiB, so assembling a frame that
// arrived in pieces costs no allocation in steady state. Larger requests are
// allocated and left to the garbage collector.
const (
	minClass = 6  // 64 B
	maxClass = 20 // 1 MiB
)

var pools [maxClass + 1]sync.Pool

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// GetBuf returns a buffer of length 0 and capacity at least n.
func GetBuf(n int) *[]byte { return getBuf(n) }

// PutBuf returns a buffer from GetBuf to the pool.
func PutBuf(b *[]byte) { putBuf(b) }

func getBuf(n int) *[]byte {
	c := class(n)
	if c > maxClass {
		b := make([]byte, 0, n)
		return &b
	}
	if v := pools[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<c)
	return &b
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return // not from a size class
	}
	k := bits.Len(uint(c)) - 1
	if k < minClass || k > maxClass {
		return
	}
	pools[k].Put(b)
}

// AppendBuf appends p to the pooled buffer b (nil starts a new one), moving
// to a larger size class when needed, and returns the buffer to use from
// now on.
func AppendBuf(b *[]byte, p []byte) *[]byte {
	if b == nil {
		b = getBuf(len(p))
	}
	if need := len(*b) + len(p); need > cap(*b) {
		nb := getBuf(max(need, 2*cap(*b)))
		*nb = append(*nb, *b...)
		putBuf(b)
		b = nb
	}
	*b = append(*b, p...)
	return b
}
