package ports

import (
	"net"
	"strconv"
	"testing"
)

// Free picks ports that are free, below the ephemeral range and never in
// taken.
func TestFreeBelowTheEphemeralRange(t *testing.T) {
	lo := EphemeralLow()
	if lo-Floor < 1000 {
		t.Fatalf("this machine's ephemeral range starts at %d: no room below it to test", lo)
	}
	taken := map[int]bool{}
	for range 200 {
		port, err := Free("127.0.0.1", taken)
		if err != nil {
			t.Fatal(err)
		}
		if port < Floor || port >= lo {
			t.Fatalf("port %d outside [%d, %d)", port, Floor, lo)
		}
		if taken[port] {
			t.Fatalf("port %d picked twice", port)
		}
		taken[port] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", port, err)
		}
		l.Close()
	}
}

// A port in use is never picked, and when nothing below the ephemeral
// range is left Free falls back to a port the kernel calls free.
func TestFreeSkipsPortsInUse(t *testing.T) {
	held, err := Free("127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(held))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Every other port below the range is taken: the held one is the only
	// candidate there, and it is in use.
	lo := EphemeralLow()
	taken := map[int]bool{}
	for p := Floor; p < lo; p++ {
		if p != held {
			taken[p] = true
		}
	}
	for range 20 {
		port, err := Free("127.0.0.1", taken)
		if err != nil {
			t.Fatal(err)
		}
		if port == held {
			t.Fatalf("picked port %d, which is in use", port)
		}
		if port < lo {
			t.Fatalf("picked port %d, which was taken", port)
		}
	}
}
