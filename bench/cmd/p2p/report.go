package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gochat-im/gochat/bench/internal/latency"
)

// maxLag is the send lag's p99 above which the run measured the load
// generator too: its sends fell behind the schedule.
const maxLag = time.Millisecond

// undelivered is the cell of a percentile that falls among the messages
// that never arrived.
const undelivered = "> drain"

// pct formats the q-quantile of s over total messages, s holding those
// that arrived: the others, slower than every one that did, make the
// percentiles among them read "> drain".
func pct(s latency.Summary, q float64, total int64) string {
	d, ok := s.QuantileOf(q, int(total))
	if !ok {
		return undelivered
	}
	return latency.Ms(d)
}

// missing names the percentiles of the report's columns that fall among
// the total-s.Count() messages that never arrived ("" if none).
func missing(s latency.Summary, total int64) string {
	var names []string
	for _, c := range []struct {
		name string
		q    float64
	}{{"p50", .5}, {"p99", .99}, {"p99.9", .999}, {"max", 1}} {
		if _, ok := s.QuantileOf(c.q, int(total)); !ok {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ", ")
}

// notDelivered is the "not delivered within -drain" cell.
func (r result) notDelivered() string {
	n := r.sent - r.delivered
	if n <= 0 {
		return "0"
	}
	return fmt.Sprintf("%d (did not drain)", n)
}

// report prints the tables and warnings of the measured rates.
func report(w io.Writer, results []result) {
	fmt.Fprintf(w, "\nTimes start at each message's scheduled send time: the pacing plan sends -rate messages per second\n")
	fmt.Fprintf(w, "in slots of 1 ms (of one message when they are further apart), each slot's messages at its end;\n")
	fmt.Fprintf(w, "a message the sender could not write on time still counts from its scheduled time, so a stalled\n")
	fmt.Fprintf(w, "sender does not hide the wait (coordinated omission). They end when the frame reached the client's\n")
	fmt.Fprintf(w, "socket (the kernel's receive timestamp).\n")
	fmt.Fprintf(w, "  delivered: measured messages received, each counted once (duplicates in the checks below)\n")
	fmt.Fprintf(w, "  delivery: scheduled send -> the message's arrival at the receiver\n")
	fmt.Fprintf(w, "  ack: scheduled send -> the ack's arrival at the sender\n")
	fmt.Fprintf(w, "  Percentiles are over all messages sent: those not delivered count as slower than all others,\n")
	fmt.Fprintf(w, "  and a percentile that falls among them reads %q.\n", undelivered)
	fmt.Fprintf(w, "\n| target rate msg/s | achieved msg/s | sent | delivered | not delivered within -drain | delivery p50 ms | p99 ms | p99.9 ms | max ms | ack p50 ms | ack p99 ms |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		d, a := r.delivery, r.ack
		fmt.Fprintf(w, "| %d | %.0f | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.rate, r.achieved, r.sent, r.delivered, r.notDelivered(),
			pct(d, .5, r.sent), pct(d, .99, r.sent), pct(d, .999, r.sent), pct(d, 1, r.sent), pct(a, .5, r.sent), pct(a, .99, r.sent))
	}

	fmt.Fprintf(w, "\nThe sender's pace, and delivery timed from the actual send:\n")
	fmt.Fprintf(w, "  send lag: how long after its scheduled time each message was written (above %v at p99,\n", maxLag)
	fmt.Fprintf(w, "  the run measured this tool as well as GoChat)\n")
	fmt.Fprintf(w, "  delivery from the write: the write -> the message's arrival at the receiver (leaves out any wait to be sent)\n\n")
	fmt.Fprintf(w, "| target rate msg/s | send lag p50 ms | p99 ms | max ms | delivery from the write p50 ms | p99 ms | p99.9 ms | max ms |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		l, d := r.lag, r.actual
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", r.rate, latency.Ms(l.Quantile(.5)), latency.Ms(l.Quantile(.99)), latency.Ms(l.Max()),
			pct(d, .5, r.sent), pct(d, .99, r.sent), pct(d, .999, r.sent), pct(d, 1, r.sent))
	}

	fmt.Fprintf(w, "\nDelivery as this tool read the messages: scheduled send -> read by this process (its own waits for a CPU included):\n\n")
	fmt.Fprintf(w, "| target rate msg/s | read p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s |\n", r.rate, pct(r.read, .5, r.sent), pct(r.read, .99, r.sent),
			pct(r.read, .999, r.sent), pct(r.read, 1, r.sent))
	}

	fmt.Fprintf(w, "\nWhere the time of the delivered messages goes, split at logic's stamp of each message (\"ts\", whole milliseconds,\n")
	fmt.Fprintf(w, "so each part is off by up to 1 ms): to logic: the write -> sender -> gateway -> Kafka -> logic;\n")
	fmt.Fprintf(w, "from logic: logic -> dataproxy -> Kafka -> gateway -> the arrival at the receiver.\n\n")
	fmt.Fprintf(w, "| target rate msg/s | to logic p50 ms | p99 ms | from logic p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s |\n", r.rate, latency.Ms(r.toLogic.Quantile(.5)), latency.Ms(r.toLogic.Quantile(.99)),
			latency.Ms(r.fromLogic.Quantile(.5)), latency.Ms(r.fromLogic.Quantile(.99)))
	}

	fmt.Fprintf(w, "\nChecks of the pushes of the measured messages, per receiving connection and conversation:\n")
	fmt.Fprintf(w, "  duplicates: a message received again (not counted as delivered)\n")
	fmt.Fprintf(w, "  seqs skipped: seqs passed over by a later push and not received by the end of the drain\n")
	fmt.Fprintf(w, "  late: pushes of a seq lower than one received before (a seq skipped earlier)\n")
	fmt.Fprintf(w, "  out of send order: pushes whose seq order differs from the order the sender sent the messages in\n")
	fmt.Fprintf(w, "  seq reused: pushes of a seq received before, for a different message\n")
	fmt.Fprintf(w, "  duplicate acks: a message acked again\n")
	fmt.Fprintf(w, "  refused: sends the gateway answered with an error frame (not delivered, not acked)\n\n")
	fmt.Fprintf(w, "| target rate msg/s | duplicates | seqs skipped | late | out of send order | seq reused | duplicate acks | refused |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %d | %d | %d |\n", r.rate, r.dups, r.skipped, r.late, r.misnumbered, r.reused, r.ackDups, r.refused)
	}

	for _, r := range results {
		for _, line := range r.warnings() {
			fmt.Fprintf(w, "\n%s\n", line)
		}
	}
}

// warnings says what makes r's figures less than they seem.
func (r result) warnings() []string {
	var out []string
	if p99 := r.lag.Quantile(.99); p99 > maxLag {
		out = append(out, fmt.Sprintf("warning: at %d msg/s the sends fell behind the schedule (send lag p99 %s ms, max %s ms, above %v):\n"+
			"this tool could not keep the pace, so the run measured the load generator as well as GoChat.",
			r.rate, latency.Ms(p99), latency.Ms(r.lag.Max()), maxLag))
	}
	if r.refused > 0 {
		out = append(out, fmt.Sprintf("warning: at %d msg/s the gateway refused %d of %d sends (the first with reason %q; rate_limited means a sender\n"+
			"passed the gateway's -max-msg-rate, 1000 a second per connection by default: use more -pairs); they count as not delivered.",
			r.rate, r.refused, r.sent, r.refusal))
	}
	if n := r.sent - r.delivered; n > 0 {
		out = append(out, fmt.Sprintf("warning: at %d msg/s, %d of %d messages had not arrived when the drain ended (-drain %v): the run did not drain.\n"+
			"They are slower than every delivered message; the percentiles among them (%s) read %q.",
			r.rate, n, r.sent, r.drain, missing(r.delivery, r.sent), undelivered))
	}
	if n := r.sent - r.acked; n > 0 {
		out = append(out, fmt.Sprintf("warning: at %d msg/s, %d of %d messages had no ack when the drain ended (-drain %v); the ack percentiles among them read %q.",
			r.rate, n, r.sent, r.drain, undelivered))
	}
	return out
}
