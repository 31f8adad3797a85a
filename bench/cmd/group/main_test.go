package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/pkg/ids"
)

func TestValidate(t *testing.T) {
	good := options{prefix: freshPrefix(time.Now()), members: 10, online: 10, rounds: 1, size: 1, dialers: 1, timeout: time.Second}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*options)
	}{
		{"members 1", func(o *options) { o.members, o.online = 1, 1 }},
		{"online 0", func(o *options) { o.online = 0 }},
		{"online -5", func(o *options) { o.online = -5 }},
		{"online above members", func(o *options) { o.online = 11 }},
		{"rounds 0", func(o *options) { o.rounds = 0 }},
		{"size 0", func(o *options) { o.size = 0 }},
		{"dialers 0", func(o *options) { o.dialers = 0 }},
		{"dialers -1", func(o *options) { o.dialers = -1 }},
		{"round-timeout 0", func(o *options) { o.timeout = 0 }},
		{"pause -1s", func(o *options) { o.pause = -time.Second }},
		{"prefix with ':'", func(o *options) { o.prefix = "a:b" }},
		{"prefix too long", func(o *options) { o.prefix = strings.Repeat("p", 60) }},
	} {
		o := good
		c.edit(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s accepted", c.name)
		}
	}
}

func TestFreshPrefix(t *testing.T) {
	t0 := time.Now()
	a, b := freshPrefix(t0), freshPrefix(t0.Add(time.Nanosecond))
	if a == b {
		t.Fatalf("runs a nanosecond apart share the prefix %q", a)
	}
	o := options{prefix: a, members: 1_000_000}
	if !ids.ValidUID(o.uid(o.members-1)) || !ids.ValidUID(o.group()) {
		t.Fatalf("prefix %q gives invalid ids", a)
	}
}

func frame(cmid string) []byte {
	return []byte(`{"type":"msg","conv":"g:x","seq":1,"cmid":"` + cmid + `","body":"x"}`)
}

// A member counts once per round; a connection that closes before its copy
// is not waited for and counts as not delivered; it is not online in the
// next round.
func TestRound(t *testing.T) {
	r := &receivers{}
	a, b, c := &member{uid: "a"}, &member{uid: "b"}, &member{uid: "c"}
	r.conns = []*member{a, b, c}
	if want := r.arm(1, "p-r1"); want != 3 {
		t.Fatalf("round 1: %d online", want)
	}
	t0 := time.Now()
	r.receive(a, frame("p-r1"), t0.Add(10*time.Millisecond), t0.Add(11*time.Millisecond))
	r.receive(a, frame("p-r1"), t0.Add(12*time.Millisecond), t0.Add(12*time.Millisecond)) // again
	r.receive(a, frame("p-r0"), t0.Add(13*time.Millisecond), t0.Add(13*time.Millisecond)) // another round's
	if r.complete() {
		t.Fatal("complete after one member, received twice")
	}
	r.lostConn(b, errors.New("EOF"))
	if r.complete() {
		t.Fatal("complete with c waiting")
	}
	r.receive(c, frame("p-r1"), t0.Add(30*time.Millisecond), t0.Add(31*time.Millisecond))
	if !r.complete() {
		t.Fatal("not complete: a and c have it, b closed")
	}
	rs := r.end()
	rs.n, rs.online = 1, 3
	if rs.delivered != 2 || rs.dups != 1 || rs.lost != 1 {
		t.Fatalf("delivered %d dups %d lost %d", rs.delivered, rs.dups, rs.lost)
	}
	// Times are from arm (a little before t0); p99 and last fall on b.
	if rs.at(.99) != noCopy || rs.at(1) != noCopy || rs.at(0) == noCopy {
		t.Fatalf("first %s p99 %s last %s", rs.at(0), rs.at(.99), rs.at(1))
	}
	row := rs.row()
	if !strings.HasSuffix(row, "| 1 | 1 |") || !strings.Contains(row, "| 3 | 2 |") {
		t.Fatalf("row %s", row)
	}
	if ws := rs.warnings(time.Minute); len(ws) != 1 || !strings.Contains(ws[0], "1 connection(s) closed before their copy came") {
		t.Fatalf("warnings %q", ws)
	}
	_, notes := r.closedTotal()
	if len(notes) != 1 || !strings.Contains(notes[0], "b's connection closed during round 1") {
		t.Fatalf("notes %q", notes)
	}
	// Copies after the round are not counted.
	r.receive(a, frame("p-r1"), time.Now(), time.Now())
	if r.dups.Load() != 1 {
		t.Fatal("a copy after the round counted")
	}
	if want := r.arm(2, "p-r2"); want != 2 {
		t.Fatalf("round 2: %d online", want)
	}
	r.receive(a, frame("p-r2"), time.Now(), time.Now())
	if r.got.Load() != 1 || r.dups.Load() != 0 {
		t.Fatalf("round 2: got %d dups %d", r.got.Load(), r.dups.Load())
	}
}

func TestRates(t *testing.T) {
	// 101 members, from 100 ms to 200 ms after the send call.
	r := &receivers{}
	r.arm(1, "x")
	r.mu.Lock()
	t0 := r.t0
	r.mu.Unlock()
	for i := range 101 {
		r.receive(&member{}, frame("x"), t0.Add(100*time.Millisecond+time.Duration(i)*time.Millisecond), t0)
	}
	rs := r.end()
	rs.online = 101
	if got := rs.rate(); got < 504 || got > 506 {
		t.Fatalf("deliveries/s from the send %.1f, want 505", got)
	}
	if got := rs.fanOut(); got != "1000" {
		t.Fatalf("fan-out/s %s, want 1000", got)
	}
	if ws := rs.warnings(time.Minute); len(ws) != 0 {
		t.Fatalf("warnings %q", ws)
	}
	one := roundResult{online: 1, delivered: 1}
	if one.fanOut() != "-" {
		t.Fatal("fan-out of one copy")
	}
}
