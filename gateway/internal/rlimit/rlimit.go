// Package rlimit raises the process's open-file limit, which caps how many
// client sockets one gateway process can hold.
package rlimit

import "syscall"

// RaiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit and returns
// the limits in force afterwards. Failing to raise it is not fatal: the
// caller logs what it got.
func RaiseNoFile() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	return lim.Cur, lim.Max, err
}
