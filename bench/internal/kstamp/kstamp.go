//go:build linux

// Package kstamp reads the kernel's receive timestamps of socket data
// (SO_TIMESTAMPNS). The bench tools share the machine's CPUs with the
// servers they measure, so a client may wait for a CPU before it reads
// what has arrived; the kernel's stamp says when the data reached the
// client's socket, which is what a client on a machine of its own would
// see.
package kstamp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// OOBSize is room enough for the control message a stamped read brings.
const OOBSize = 64

// Enable asks the kernel to stamp the data read from fd.
func Enable(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// Parse returns the receive time (unix nanoseconds) in the control data of
// a recvmsg, or 0 if it holds none.
func Parse(oob []byte) int64 {
	const hdr = int(unsafe.Sizeof(unix.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		clen := int(h.Len)
		if clen < hdr || clen > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && clen >= hdr+int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano()
		}
		oob = oob[min(len(oob), (clen+7)&^7):]
	}
	return 0
}
