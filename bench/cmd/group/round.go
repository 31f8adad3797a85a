package main

import (
	"fmt"
	"time"

	"github.com/gochat-im/gochat/bench/internal/latency"
)

// roundResult holds one round's figures.
type roundResult struct {
	n         int
	seq       int64
	online    int             // connections open at the round's start
	send      time.Duration   // the Send RPC's time
	arrivals  latency.Summary // from before the Send call to each member's copy
	delivered int             // members that got the message, each once
	dups      int64           // copies received again by a member
	lost      int             // connections that closed before their copy came
	lastRead  time.Duration   // from before the Send call to reading the last copy
}

// noCopy is the cell of a time that falls among the members that had no
// copy by the end of the round (timed out, or their connection closed).
const noCopy = "no copy"

func printLegend() {
	fmt.Printf("\nTimes start just before the Send call and end when a member's copy reached its socket (the kernel's\n")
	fmt.Printf("receive timestamp). Each member counts once per round (duplicates in their own column); percentiles\n")
	fmt.Printf("and \"last\" are over the members online at the round's start, counting those without a copy at the\n")
	fmt.Printf("end of the round as slower than all others; a figure that falls among them reads %q.\n", noCopy)
	fmt.Printf("  deliveries/s from the send: delivered / last, the store and routing time included\n")
	fmt.Printf("  fan-out/s: (delivered - 1) / (last - first), the pushing rate from the first copy to the last\n")
	fmt.Printf("  last read: until this tool had read the last copy (its own waits for a CPU included)\n")
	fmt.Printf("  conns closed: connections that closed during the round before their copy came (not waited for)\n")
	fmt.Printf("\n| round | online | delivered | send RPC ms | first ms | p50 ms | p99 ms | last ms | deliveries/s from the send | last read ms | fan-out/s | duplicates | conns closed |\n")
	fmt.Printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
}

// at formats the q-quantile of the arrivals over the members online.
func (r roundResult) at(q float64) string {
	d, ok := r.arrivals.QuantileOf(q, r.online)
	if !ok {
		return noCopy
	}
	return latency.Ms(d)
}

// rate is deliveries per second from the send call.
func (r roundResult) rate() float64 {
	last := r.arrivals.Max()
	if last <= 0 {
		return 0
	}
	return float64(r.delivered) / last.Seconds()
}

// fanOut is deliveries per second from the first arrival to the last.
func (r roundResult) fanOut() string {
	span := r.arrivals.Max() - r.arrivals.Quantile(0)
	if r.delivered < 2 || span <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(r.delivered-1)/span.Seconds())
}

func (r roundResult) row() string {
	return fmt.Sprintf("| %d (seq %d) | %d | %d | %s | %s | %s | %s | %s | %.0f | %s | %s | %d | %d |", r.n, r.seq, r.online, r.delivered,
		latency.Ms(r.send), r.at(0), r.at(.5), r.at(.99), r.at(1), r.rate(), latency.Ms(r.lastRead), r.fanOut(), r.dups, r.lost)
}

// warnings says what the round's figures leave out.
func (r roundResult) warnings(timeout time.Duration) []string {
	var out []string
	if n := r.online - r.delivered - r.lost; n > 0 {
		out = append(out, fmt.Sprintf("warning: round %d: %d of %d members had no copy after -round-timeout %v", r.n, n, r.online, timeout))
	}
	if r.lost > 0 {
		out = append(out, fmt.Sprintf("warning: round %d: %d connection(s) closed before their copy came; counted as not delivered", r.n, r.lost))
	}
	return out
}
