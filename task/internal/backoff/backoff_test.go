package backoff

import (
	"testing"
	"time"
)

func TestDelayGrowsAndCaps(t *testing.T) {
	p := Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second, Rand: func() float64 { return 0 }}
	// With Rand fixed at 0 the delay is exactly half the nominal one.
	want := []time.Duration{
		100 * time.Millisecond, // attempt 1: nominal 200ms
		200 * time.Millisecond,
		400 * time.Millisecond,
		800 * time.Millisecond,
		1600 * time.Millisecond,
		3200 * time.Millisecond,
		6400 * time.Millisecond,
		12800 * time.Millisecond,
		15 * time.Second, // nominal 25.6s -> 51.2s capped at 30s
		15 * time.Second,
	}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := p.Delay(10_000); got != 15*time.Second {
		t.Errorf("Delay(10000) = %v, want the cap's half", got)
	}
}

func TestDelayJitterBounds(t *testing.T) {
	cases := []struct {
		name    string
		attempt int
		lo, hi  time.Duration
	}{
		{"first", 1, 100 * time.Millisecond, 200 * time.Millisecond},
		{"third", 3, 400 * time.Millisecond, 800 * time.Millisecond},
		{"capped", 20, 15 * time.Second, 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
				p := Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second, Rand: func() float64 { return r }}
				d := p.Delay(c.attempt)
				if d < c.lo || d >= c.hi {
					t.Errorf("rand %v: Delay(%d) = %v, want in [%v, %v)", r, c.attempt, d, c.lo, c.hi)
				}
			}
			// The default random source stays in bounds too.
			p := Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second}
			for range 1000 {
				if d := p.Delay(c.attempt); d < c.lo || d >= c.hi {
					t.Fatalf("Delay(%d) = %v, want in [%v, %v)", c.attempt, d, c.lo, c.hi)
				}
			}
		})
	}
}

func TestDelayEdgeCases(t *testing.T) {
	zero := func() float64 { return 0 }
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy: %v, want 0", d)
	}
	if d := (Policy{Base: time.Second, Max: time.Millisecond, Rand: zero}).Delay(5); d != 500*time.Millisecond {
		t.Errorf("max below base: %v, want base/2", d)
	}
	if d := (Policy{Base: time.Second, Max: 10 * time.Second, Rand: zero}).Delay(0); d != 500*time.Millisecond {
		t.Errorf("attempt 0 treated as 1: %v", d)
	}
	huge := Policy{Base: time.Duration(1) << 61, Max: time.Duration(1<<63 - 1), Rand: zero}
	if d := huge.Delay(10); d <= 0 {
		t.Errorf("overflow: %v", d)
	}
}
