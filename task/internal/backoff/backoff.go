// Package backoff computes retry delays: exponential growth from a base,
// capped at a maximum, with random jitter so that many tasks failing at the
// same moment (a webhook going down) do not all retry at the same moment.
//
// A Policy is a value with no mutable state; Delay is safe for concurrent use
// as long as the Rand function it holds is.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy describes the delays between attempts.
type Policy struct {
	// Base is the nominal delay before the second attempt; it doubles for
	// every further attempt.
	Base time.Duration
	// Max caps the nominal delay.
	Max time.Duration
	// Rand returns a number in [0, 1). Nil means math/rand/v2.Float64.
	// Tests set it to make delays predictable.
	Rand func() float64
}

// Delay returns how long to wait after the given failed attempt (1 for the
// first attempt) before the next one.
//
// The nominal delay is Base*2^(attempt-1), capped at Max; the result is
// drawn uniformly from [nominal/2, nominal) ("equal jitter"). Keeping the
// lower half fixed means a retry never fires immediately after a failure,
// while the random upper half spreads a burst of failures over time.
func (p Policy) Delay(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	maxD := p.Max
	if maxD < p.Base {
		maxD = p.Base
	}
	if attempt < 1 {
		attempt = 1
	}
	d := p.Base
	for i := 1; i < attempt && d < maxD; i++ {
		if d > maxD/2 {
			d = maxD // doubling would pass the cap (or overflow)
		} else {
			d *= 2
		}
	}
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}
