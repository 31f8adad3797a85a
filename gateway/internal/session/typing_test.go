package session

import (
	"testing"
	"time"
)

func TestAllowTyping(t *testing.T) {
	now := time.Unix(1700000000, 0).UnixNano()
	s := New(&Env{Now: func() int64 { return now }}, nil, 1)
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true},                       // the first passes
		{0, false},                      // same instant
		{999 * time.Millisecond, false}, // still within the second
		{time.Millisecond, true},        // a second after the first
		{500 * time.Millisecond, false},
		{10 * time.Second, true},
		{49 * 24 * time.Hour, true}, // long idle, near the 32-bit wrap
		{0, false},
		{50 * 24 * time.Hour, true}, // past the wrap
		{0, false},
	}
	for i, st := range steps {
		now += int64(st.advance)
		if got := s.AllowTyping(time.Second); got != st.want {
			t.Fatalf("step %d (+%v): got %v, want %v", i, st.advance, got, st.want)
		}
	}
	// Time 0 of the 32-bit millisecond clock still counts as "seen".
	now = 0
	z := New(&Env{Now: func() int64 { return now }}, nil, 2)
	if !z.AllowTyping(time.Second) || z.AllowTyping(time.Second) {
		t.Fatal("at clock 0: want the first indicator through and the second dropped")
	}
}
