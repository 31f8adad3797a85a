package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/bench/internal/latency"
	"github.com/gochat-im/gochat/pkg/protocol"
)

func TestCMIDRoundTrip(t *testing.T) {
	id := msgID{scheduled: time.Unix(0, 1764330000123456789), idx: 123456789, lag: 1234567 * time.Nanosecond}
	s := formatCMID(id)
	if !protocol.ValidClientMsgID(s) {
		t.Fatalf("%q is not a valid client message id", s)
	}
	got, ok := parseCMID(s)
	if !ok || !got.scheduled.Equal(id.scheduled) || got.idx != id.idx || got.lag != id.lag {
		t.Fatalf("parse(%q) = %+v %v, want %+v", s, got, ok, id)
	}
	if !got.sent().Equal(id.scheduled.Add(id.lag)) {
		t.Fatalf("sent %v", got.sent())
	}
	for _, bad := range []string{"", "1", "1-2", "a-1-2", "1-b-2", "1-2-c", "1--1-2", "bench-r1"} {
		if _, ok := parseCMID(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The schedule: message n is scheduled at the first slot boundary after it
// is due, a slot's worth of messages per boundary, and the pacing loop
// (which sends, at boundary B, every message due before B) never sends a
// message before its scheduled time.
func TestSchedule(t *testing.T) {
	for _, c := range []struct {
		rate int
		slot time.Duration
	}{{5000, time.Millisecond}, {1000, time.Millisecond}, {3, 333333333}, {1, time.Second}, {20001, time.Millisecond}} {
		slot := slotOf(c.rate)
		if slot != c.slot {
			t.Fatalf("rate %d: slot %v, want %v", c.rate, slot, c.slot)
		}
		var n int64
		perBoundary := map[int64]int{}
		for boundary := slot; boundary <= 3*time.Second; boundary += slot {
			for dueAt(n, c.rate) < boundary {
				s := scheduledAt(n, c.rate, slot)
				if s > boundary || s <= dueAt(n, c.rate) || s%slot != 0 {
					t.Fatalf("rate %d: message %d due %v scheduled %v, sent at %v", c.rate, n, dueAt(n, c.rate), s, boundary)
				}
				perBoundary[int64(boundary/slot)]++
				n++
			}
		}
		// Each boundary gets about rate*slot messages; all of them in 3 s.
		want := float64(c.rate) * slot.Seconds()
		for b, k := range perBoundary {
			if float64(k) > want+1 || float64(k) < want-1 {
				t.Fatalf("rate %d: %d messages at boundary %d, want about %.1f", c.rate, k, b, want)
			}
		}
		if total := float64(c.rate) * 3; float64(n) < total-want-1 || float64(n) > total+1 {
			t.Fatalf("rate %d: %d messages in 3 s", c.rate, n)
		}
	}
	// No overflow far into a long run at a high rate.
	if d := dueAt(20_000_000*3600*24, 20_000_000); d != 24*time.Hour {
		t.Fatalf("due %v", d)
	}
}

func TestSeqCheck(t *testing.T) {
	var s seqCheck
	// The first push sets the start: earlier runs and the warm-up wrote
	// seqs 1-40 of "a".
	if p := s.observe("a", 41, 100, 0); p != (pushCheck{}) {
		t.Fatalf("first push: %+v", p)
	}
	if p := s.observe("a", 42, 101, 1); p != (pushCheck{}) {
		t.Fatalf("next seq: %+v", p)
	}
	// 43 and 44 skipped by a push in run 1.
	if p := s.observe("a", 45, 104, 1); p.skipped != 2 || p.late || p.repeated || p.misnumbered {
		t.Fatalf("gap: %+v", p)
	}
	// 44 comes late: it fills a hole opened in run 1.
	if p := s.observe("a", 44, 103, 1); !p.late || p.lateRun != 1 || p.skipped != 0 || p.repeated || p.misnumbered {
		t.Fatalf("late: %+v", p)
	}
	// 44 again: a repeat, no longer a hole.
	if p := s.observe("a", 44, 103, 1); !p.repeated || p.late {
		t.Fatalf("repeat: %+v", p)
	}
	// 46 numbered for a message sent before 45's: out of send order.
	if p := s.observe("a", 46, 102, 1); !p.misnumbered || p.skipped != 0 {
		t.Fatalf("numbered out of send order: %+v", p)
	}
	// 47 sent after 46 but before 45 (idx 103 < 104, the last highest is
	// 102, so in order with it) is fine.
	if p := s.observe("a", 47, 105, 1); p != (pushCheck{}) {
		t.Fatalf("in order again: %+v", p)
	}
	// 43, filled late, was sent before 47: in send order; a late message
	// sent after the highest one is not.
	if p := s.observe("a", 43, 102, 2); !p.late || p.lateRun != 1 || p.misnumbered {
		t.Fatalf("late, in send order: %+v", p)
	}
	s.observe("a", 49, 107, 0) // skipped 48 in a push nobody counts
	if p := s.observe("a", 48, 200, 1); !p.late || p.lateRun != 0 || !p.misnumbered {
		t.Fatalf("late, sent after a higher seq: %+v", p)
	}
	// Conversations are separate; unknown send indexes skip that check.
	if p := s.observe("b", 7, -1, 1); p != (pushCheck{}) {
		t.Fatalf("other conversation: %+v", p)
	}
	if p := s.observe("b", 8, 3, 1); p != (pushCheck{}) {
		t.Fatalf("after an unknown index: %+v", p)
	}
}

func TestOnceSet(t *testing.T) {
	var o onceSet
	if !o.first(1, 5) || o.first(1, 5) || !o.first(1, 6) {
		t.Fatal("run 1")
	}
	if !o.first(2, 5) || o.first(2, 5) {
		t.Fatal("a new run forgets the old one")
	}
}

func summary(ms ...int) latency.Summary {
	var r latency.Recorder
	for _, m := range ms {
		r.Add(time.Duration(m) * time.Millisecond)
	}
	return r.Snapshot()
}

func TestUndeliveredPercentiles(t *testing.T) {
	var ms []int
	for i := 1; i <= 995; i++ {
		ms = append(ms, i)
	}
	s := summary(ms...)
	// 1000 sent, 995 delivered: p50 and p99 are known, p99.9 and max fall
	// among the 5 that never arrived.
	if got := pct(s, .5, 1000); got != "500.00" {
		t.Fatalf("p50 %s", got)
	}
	if got := pct(s, .99, 1000); got != "990.00" {
		t.Fatalf("p99 %s", got)
	}
	if pct(s, .999, 1000) != undelivered || pct(s, 1, 1000) != undelivered {
		t.Fatal("p99.9 and max should read > drain")
	}
	if got := missing(s, 1000); got != "p99.9, max" {
		t.Fatalf("missing %q", got)
	}
	if got := missing(s, 995); got != "" {
		t.Fatalf("all delivered: missing %q", got)
	}
	if got := pct(s, 1, 995); got != "995.00" {
		t.Fatalf("all delivered: max %s", got)
	}
}

func TestReportWarnings(t *testing.T) {
	var lag latency.Recorder
	for i := range 100 {
		lag.Add(time.Duration(i) * 50 * time.Microsecond) // p99 4.90 ms
	}
	r := result{rate: 5000, achieved: 5000, drain: 5 * time.Second, sent: 1000, delivered: 995, acked: 1000,
		delivery: summary(make([]int, 995)...), actual: summary(make([]int, 995)...), ack: summary(make([]int, 1000)...),
		read: summary(make([]int, 995)...), lag: lag.Snapshot(), dups: 3, refused: 2, refusal: "rate_limited"}
	var b bytes.Buffer
	report(&b, []result{r})
	out := b.String()
	for _, want := range []string{
		"| 5000 | 5000 | 1000 | 995 | 5 (did not drain) | 0.00 | 0.00 | > drain | > drain | 0.00 | 0.00 |",
		"| 5000 | 3 | 0 | 0 | 0 | 0 | 0 | 2 |",
		"the gateway refused 2 of 1000 sends (the first with reason \"rate_limited\";",
		"the sends fell behind the schedule (send lag p99 4.90 ms",
		"5 of 1000 messages had not arrived when the drain ended (-drain 5s): the run did not drain",
		"(p99.9, max) read \"> drain\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "had no ack") {
		t.Errorf("all acked, yet:\n%s", out)
	}
}

func TestValidate(t *testing.T) {
	good := options{pairs: 1, rate: 1, bodySize: 1, duration: time.Second}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*options)
	}{
		{"rate 0", func(o *options) { o.rate = 0 }},
		{"rate -100", func(o *options) { o.rate = -100 }},
		{"rate too high", func(o *options) { o.rate = maxRate + 1 }},
		{"pairs 0", func(o *options) { o.pairs = 0 }},
		{"body 0", func(o *options) { o.bodySize = 0 }},
		{"duration 0", func(o *options) { o.duration = 0 }},
		{"warmup -1s", func(o *options) { o.warmup = -time.Second }},
		{"drain -1s", func(o *options) { o.drain = -time.Second }},
		{"sweep 0", func(o *options) { o.sweep = "100,0" }},
		{"sweep x", func(o *options) { o.sweep = "x" }},
		{"sweep empty", func(o *options) { o.sweep = "," }},
	} {
		o := good
		c.edit(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s accepted", c.name)
		}
	}
	o := good
	o.rate, o.sweep = 0, "100,200" // -sweep overrides -rate
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
}
