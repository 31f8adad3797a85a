package offsets

import (
	"math/rand/v2"
	"testing"
)

type step struct {
	done     int64
	next     int64
	advanced bool
}

func TestPartitionOutOfOrder(t *testing.T) {
	cases := []struct {
		name  string
		added []int64
		steps []step
	}{
		{
			name:  "in order",
			added: []int64{0, 1, 2},
			steps: []step{{0, 1, true}, {1, 2, true}, {2, 3, true}},
		},
		{
			name:  "later finishes first",
			added: []int64{10, 11, 12, 13},
			steps: []step{{12, 0, false}, {11, 0, false}, {10, 13, true}, {13, 14, true}},
		},
		{
			name:  "reverse",
			added: []int64{5, 6, 7},
			steps: []step{{7, 0, false}, {6, 0, false}, {5, 8, true}},
		},
		{
			// Gaps in the offsets (compacted topics, transaction markers)
			// must not hold the position back.
			name:  "gaps",
			added: []int64{1, 5, 7, 100},
			steps: []step{{5, 0, false}, {1, 6, true}, {100, 0, false}, {7, 101, true}},
		},
		{
			name:  "unknown and repeated offsets are ignored",
			added: []int64{3, 4},
			steps: []step{{2, 0, false}, {4, 0, false}, {4, 0, false}, {9, 0, false}, {3, 5, true}, {3, 0, false}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewPartition()
			for _, o := range c.added {
				if err := p.Add(o); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range c.steps {
				next, ok := p.Done(s.done)
				if ok != s.advanced || (ok && next != s.next) {
					t.Fatalf("Done(%d) = %d, %v; want %d, %v", s.done, next, ok, s.next, s.advanced)
				}
			}
			if p.Pending() != 0 {
				t.Fatalf("pending %d after all done", p.Pending())
			}
		})
	}
}

func TestPartitionAddMustIncrease(t *testing.T) {
	p := NewPartition()
	if err := p.Add(4); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(4); err == nil {
		t.Fatal("adding the same offset twice succeeded")
	}
	if err := p.Add(3); err == nil {
		t.Fatal("adding a lower offset succeeded")
	}
	// After everything is released, offsets still must not go back.
	p.Done(4)
	if err := p.Add(2); err == nil {
		t.Fatal("adding a released offset succeeded")
	}
	if err := p.Add(5); err != nil {
		t.Fatal(err)
	}
}

// TestPartitionRandom finishes many records in random order, interleaved
// with new ones, and checks after every step that the stored position is
// exactly the lowest unfinished offset (or one past the last when none is
// left), which is the contract the consumer relies on.
func TestPartitionRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := NewPartition()
	var (
		running  []int64
		finished = map[int64]bool{}
		added    []int64
		stored   int64 = -1
		nextOff  int64
	)
	for round := 0; round < 20000; round++ {
		if len(running) == 0 || (len(running) < 3000 && rng.IntN(2) == 0) {
			nextOff += 1 + int64(rng.IntN(3)) // with gaps
			if err := p.Add(nextOff); err != nil {
				t.Fatal(err)
			}
			running = append(running, nextOff)
			added = append(added, nextOff)
			continue
		}
		i := rng.IntN(len(running))
		off := running[i]
		running[i] = running[len(running)-1]
		running = running[:len(running)-1]
		finished[off] = true
		next, ok := p.Done(off)
		// The expected position: one past the longest finished prefix.
		want := stored
		for _, o := range added {
			if !finished[o] {
				break
			}
			want = o + 1
		}
		if ok {
			if next != want || next <= stored {
				t.Fatalf("round %d: Done(%d) stored %d, want %d (previous %d)", round, off, next, want, stored)
			}
			stored = next
		} else if want != stored {
			t.Fatalf("round %d: Done(%d) did not advance, want %d (stored %d)", round, off, want, stored)
		}
		// Drop the released prefix from the reference list.
		for len(added) > 0 && finished[added[0]] {
			delete(finished, added[0])
			added = added[1:]
		}
	}
	// Pending counts every record not released yet: the running ones and
	// the finished ones waiting behind them.
	if p.Pending() != len(added) {
		t.Fatalf("pending %d, want %d", p.Pending(), len(added))
	}
}
