package obs

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCFloorPercent(t *testing.T) {
	f := GCFloor{Min: 64 << 20, Percent: 25}
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 25},
		{1 << 20, 6300}, // 1 MiB live: next GC at 64 MiB
		{8 << 20, 700},  // 8 MiB live: at 64 MiB
		{30 << 20, 110}, // 30 MiB: 113% rounded down to 110
		{52 << 20, 25},  // 52 MiB × 1.25 = 65 MiB, above the floor
		{1 << 30, 25},   // large heaps keep the configured percentage
		{60 << 20, 25},  // 6.6% needed; never below Percent
	} {
		if got := f.percentFor(c.live); got != c.want {
			t.Errorf("live %d MiB: percent %d, want %d", c.live>>20, got, c.want)
		}
		if c.live > 0 {
			next := c.live + c.live*uint64(f.percentFor(c.live))/100
			if lim := max(f.Min, c.live+c.live/4); next > lim {
				t.Errorf("live %d MiB: next GC at %d MiB, above the floor's bound %d MiB", c.live>>20, next>>20, lim>>20)
			}
		}
	}
}

func TestGCFloorRunRaisesAndRestores(t *testing.T) {
	old := debug.SetGCPercent(40)
	defer debug.SetGCPercent(old)
	runtime.GC() // the live heap is known after a first collection
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		GCFloor{Min: 1 << 40, Interval: time.Millisecond}.Run(ctx) // a floor no test heap reaches
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := debug.SetGCPercent(40)
		debug.SetGCPercent(p)
		if p > 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GC percentage was not raised")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if p := debug.SetGCPercent(old); p != 40 {
		t.Fatalf("after Run: GC percent %d, want 40 restored", p)
	}
}
