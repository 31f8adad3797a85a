package obs

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GCFloor keeps the Go GC's heap target at or above a floor.
//
// Go sets the next collection at live heap × (1 + GOGC/100). That is right
// for a big heap (a gateway holding a million connections runs GOGC 25 to
// keep its memory per connection low), but a small live heap then means a
// collection every few hundred kilobytes of garbage: at thousands of
// messages per second a service with 5 MB live would collect dozens of
// times a second, and each cycle's mark work and assists land on the
// request path as latency. GCFloor raises the GC percentage while the
// live heap is small, so the next collection comes no earlier than at
// Min bytes of heap, and gives the configured percentage back as the
// live heap grows: the floor costs at most Min bytes of extra garbage,
// never more. It re-reads the live heap every Interval.
type GCFloor struct {
	// Min is the smallest heap target in bytes; 0 turns the floor off.
	Min uint64
	// Percent is the GC percentage for heaps above the floor (GOGC); 0
	// reads the current setting.
	Percent int
	// Interval between adjustments; default 250 ms.
	Interval time.Duration
}

// Run adjusts the GC percentage until ctx ends, then restores Percent.
func (f GCFloor) Run(ctx context.Context) {
	if f.Min == 0 {
		return
	}
	if f.Percent <= 0 {
		f.Percent = debug.SetGCPercent(100)
		debug.SetGCPercent(f.Percent)
	}
	if f.Percent < 0 { // GC off: nothing to raise
		return
	}
	if f.Interval <= 0 {
		f.Interval = 250 * time.Millisecond
	}
	defer debug.SetGCPercent(f.Percent)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := f.Percent
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		var live uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		if p := f.percentFor(live); p != cur {
			debug.SetGCPercent(p)
			cur = p
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// percentFor returns the GC percentage that puts the next collection at
// max(live × (1 + Percent/100), Min), rounded so that small changes of the
// live heap do not change the setting every tick.
func (f GCFloor) percentFor(live uint64) int {
	if live == 0 {
		return f.Percent
	}
	target := live + live*uint64(f.Percent)/100
	if target >= f.Min {
		return f.Percent
	}
	p := int((f.Min - live) * 100 / live)
	// Round down to two significant digits: 1234 -> 1200.
	for m := 1; ; m *= 10 {
		if p < 100*m {
			p = p / m * m
			break
		}
	}
	return max(p, f.Percent)
}
