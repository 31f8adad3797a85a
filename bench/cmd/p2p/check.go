package main

import (
	"strconv"
	"strings"
	"time"
)

// The pacing plan. Sending rate messages per second, message n (counted
// from the start of a pace call) is due at n/rate seconds. The sender
// wakes once per slot (1 ms, or the gap between two messages when that is
// longer: waking every millisecond for nothing costs the box a few
// percent of a CPU) and sends the messages due before the slot boundary
// it woke at; so message n is scheduled at the first slot boundary after
// its due time. Latency is timed from that scheduled time, not from the
// moment the message was written: when the sender is held up, the
// messages it could not send in time go out late in a burst, and timing
// them from the late write would leave out the wait (coordinated
// omission).

// slotOf returns the length of the pacing slot at rate messages per second.
func slotOf(rate int) time.Duration {
	return max(time.Millisecond, time.Second/time.Duration(rate))
}

// dueAt returns when message n is due after the start of sending at rate
// messages per second (exact in nanoseconds, without overflow for any run
// of less than 290 years).
func dueAt(n int64, rate int) time.Duration {
	r := int64(rate)
	return time.Duration((n/r)*int64(time.Second) + (n%r)*int64(time.Second)/r)
}

// scheduledAt returns the slot boundary, after the start, at which
// message n is scheduled: the first one after it is due.
func scheduledAt(n int64, rate int, slot time.Duration) time.Duration {
	return (dueAt(n, rate)/slot + 1) * slot
}

// Client message ids carry, for the receiver and the ack, what is needed
// to time the message and check its order, so neither side keeps a table
// of messages in flight: "<scheduled>-<index>-<lag>": the scheduled send
// time (Unix nanoseconds), the send index (counts every message this
// process sends, warm-ups included, so it orders one sender's messages)
// and how long after the scheduled time it was written (nanoseconds).
// With a 19-digit time the id is about 35 bytes (the limit is 64).

type msgID struct {
	scheduled time.Time
	idx       int64
	lag       time.Duration
}

// sent is when the message was written.
func (m msgID) sent() time.Time { return m.scheduled.Add(m.lag) }

func formatCMID(m msgID) string {
	b := make([]byte, 0, 40)
	b = strconv.AppendInt(b, m.scheduled.UnixNano(), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, m.idx, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(m.lag), 10)
	return string(b)
}

func parseCMID(s string) (msgID, bool) {
	a, rest, ok1 := strings.Cut(s, "-")
	i, l, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 {
		return msgID{}, false
	}
	ns, err1 := strconv.ParseInt(a, 10, 64)
	idx, err2 := strconv.ParseInt(i, 10, 64)
	lag, err3 := strconv.ParseInt(l, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || idx < 0 {
		return msgID{}, false
	}
	return msgID{scheduled: time.Unix(0, ns), idx: idx, lag: time.Duration(lag)}, true
}

// seqCheck follows the seqs pushed to one connection, per conversation.
// Each push should carry the seq after the last one; and since one
// sender's messages are numbered in the order it sent them, a higher seq
// should come with a higher send index. The first push of a conversation
// sets where the check starts: the bench's conversations may hold the
// messages of earlier runs, and the warm-up's messages come before the
// measured ones, so the first seq is seldom 1. Warm-up pushes go through
// the check too (skipping them would look like gaps); the caller counts
// only what pushes of the measured time reveal.
type seqCheck struct {
	convs map[string]*convSeqs
}

type convSeqs struct {
	last    int64 // highest seq received
	lastIdx int64 // send index of that message, -1 if unknown
	// holes are the seqs skipped by a push and not received since, each
	// with the run of the push that skipped them.
	holes map[int64]int64
}

// maxHoles bounds the skipped seqs remembered per conversation: a seq
// skipped beyond it that arrives later counts as repeated, not late.
const maxHoles = 1 << 16

// pushCheck is what one push revealed.
type pushCheck struct {
	// skipped is the number of seqs between the highest one received
	// before and this one: not received (yet).
	skipped int64
	// late: the push carried a seq skipped earlier; lateRun is the run
	// of the push that skipped it (0 if none counted it).
	late    bool
	lateRun int64
	// repeated: the seq had been received already.
	repeated bool
	// misnumbered: the seqs and the send order disagree: the message has
	// a higher seq than a message sent after it, or a lower seq than one
	// sent before it.
	misnumbered bool
}

// observe checks a push of seq in conv; idx is the message's send index
// (-1 if unknown) and run the measurement whose figures count what the
// push reveals (0 for none: a warm-up message, or one after the drain).
func (s *seqCheck) observe(conv string, seq, idx, run int64) pushCheck {
	if s.convs == nil {
		s.convs = map[string]*convSeqs{}
	}
	c := s.convs[conv]
	if c == nil {
		s.convs[conv] = &convSeqs{last: seq, lastIdx: idx}
		return pushCheck{}
	}
	var p pushCheck
	switch {
	case seq > c.last:
		p.skipped = seq - c.last - 1
		for q := c.last + 1; q < seq && len(c.holes) < maxHoles; q++ {
			if c.holes == nil {
				c.holes = map[int64]int64{}
			}
			c.holes[q] = run
		}
		p.misnumbered = idx >= 0 && c.lastIdx >= 0 && idx < c.lastIdx
		c.last, c.lastIdx = seq, idx
	default:
		r, ok := c.holes[seq]
		if !ok {
			p.repeated = true
			break
		}
		delete(c.holes, seq)
		p.late, p.lateRun = true, r
		p.misnumbered = idx >= 0 && c.lastIdx >= 0 && idx > c.lastIdx
	}
	return p
}

// onceSet tells whether a message (by send index) arrives for the first
// time on a connection during a run; it forgets earlier runs.
type onceSet struct {
	run  int64
	seen map[int64]struct{}
}

func (o *onceSet) first(run, idx int64) bool {
	if o.seen == nil || o.run != run {
		o.run, o.seen = run, map[int64]struct{}{}
	}
	if _, dup := o.seen[idx]; dup {
		return false
	}
	o.seen[idx] = struct{}{}
	return true
}
