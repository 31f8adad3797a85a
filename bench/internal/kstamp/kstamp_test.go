//go:build linux

package kstamp

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Parse finds the timestamp among control messages and returns 0 for
// control data without one or cut short.
func TestParse(t *testing.T) {
	ts := unix.NsecToTimespec(1_700_000_000_123_456_789)
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)))
	other := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, []byte{1, 0, 0, 0})
	for name, c := range map[string]struct {
		oob  []byte
		want int64
	}{
		"alone":          {stamp, ts.Nano()},
		"after another":  {append(append([]byte{}, other...), stamp...), ts.Nano()},
		"none":           {other, 0},
		"empty":          {nil, 0},
		"cut short":      {stamp[:len(stamp)-4], 0},
		"header only":    {stamp[:unix.SizeofCmsghdr], 0},
		"length too big": {func() []byte { b := append([]byte{}, stamp...); b[0] = 0xff; return b }(), 0},
	} {
		if got := Parse(c.oob); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}
