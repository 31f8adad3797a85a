// Package timerslack sets the timer slack of a whole process on Linux.
//
// The timer slack is how late the kernel may end a thread's sleep so that it
// can serve several timers with one wake-up (50 µs by default). It matters
// for Go services on small virtual machines because of the Go runtime's
// monitor thread (sysmon): while the process is busy, and for a millisecond
// after any thread returns from a long system call or cgo call (an epoll
// wait in netpoll, a librdkafka poll), sysmon sleeps 20 µs at a time. Each
// of those sleeps is a context switch, and in a virtual machine a costly
// one: measured on the 2-vCPU benchmark machine (docs/BENCHMARKS.md), the
// monitor threads of the gateway, logic and dataproxy woke 7,000-10,000
// times a second each and used 7-10% of a CPU each while the stack handled
// 100-500 messages a second. With a slack of 500 µs they wake about a third
// as often, and one-to-one latency (p50 and p99) fell by a quarter to a
// third at 500-1,000 messages a second. The price is that every timer of
// the process may fire up to the slack late, which nothing in GoChat minds
// at 500 µs.
//
// A thread takes the slack of the thread that created it, and a program
// keeps it across exec; the Go runtime starts its threads before any Go
// code runs, so Apply sets the slack on the calling thread and then execs
// the program again, which starts every thread with it.
package timerslack

import (
	"errors"
	"time"
)

// ErrUnsupported is returned by Apply where the timer slack cannot be set.
var ErrUnsupported = errors.New("timer slack: not supported on this system")

// Apply makes d the timer slack of every thread of this process. If the
// process does not have it yet, Apply restarts the program in place (same
// pid, arguments, environment and open files) with the slack set, and does
// not return; call it early, before the process starts anything that a
// restart would disturb. d <= 0 changes nothing.
func Apply(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return apply(d)
}

// Current returns the calling thread's timer slack.
func Current() (time.Duration, error) { return current() }

// Threads returns the timer slack of every thread of process pid, by
// thread id.
func Threads(pid int) (map[int]time.Duration, error) { return threads(pid) }
