// Package ports picks TCP ports for the servers that tools and tests start
// on one machine (the embedded stack, test fixtures).
//
// A port is picked below the kernel's range of ephemeral ports
// (net.ipv4.ip_local_port_range, 32768-60999 by default). A port inside it
// could be handed to the local end of an outgoing connection (a Kafka
// client's, a connection pool's) between the check and the server binding
// it; that happened in a CI run, when the port had been picked by asking
// the kernel for any free one.
package ports

import (
	"errors"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Floor is the lowest port Free picks: above the usual fixed ports of
// servers (up to 9999; MySQL's 33060 lies in the ephemeral range).
const Floor = 15000

// Free returns a port on host that is free now, in [Floor, EphemeralLow()),
// and not in taken (the caller adds the ports it has picked, so that none
// is picked twice). When there is no room below the ephemeral range, or
// none of it is free, it takes any port the kernel calls free.
func Free(host string, taken map[int]bool) (int, error) {
	lo := EphemeralLow()
	if lo-Floor >= 1000 {
		for range 500 {
			port := Floor + mrand.IntN(lo-Floor)
			if taken[port] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				continue // in use
			}
			l.Close()
			return port, nil
		}
	}
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken[port] {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// EphemeralLow returns the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read.
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 0 {
		return 32768
	}
	return lo
}
