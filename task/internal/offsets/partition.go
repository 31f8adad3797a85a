// Package offsets tracks which consumed records of a partition are done, so
// a consumer that processes records out of order can still store a Kafka
// offset that is safe: one below which every record is finished.
//
// Kafka commits a single position per partition ("everything before this is
// processed"). When records run concurrently, record 7 may finish before
// record 5; storing 8 then would lose 5 on a crash. Partition keeps the
// consumed offsets in order and only moves the safe position past a prefix
// of finished records.
//
// A Partition is not safe for concurrent use; its owner serialises calls
// (the task consumer holds its lock around them).
package offsets

import (
	"fmt"
	"sort"
)

// Partition is the completion tracker of one partition.
type Partition struct {
	// offs holds the consumed offsets still tracked, increasing, from head
	// on; done[i] says whether offs[i] has finished. Entries before head
	// are released and get reclaimed when the slices are compacted.
	offs []int64
	done []bool
	head int
	// last is the highest offset added, -1 before the first.
	last int64
}

// NewPartition returns an empty tracker.
func NewPartition() *Partition { return &Partition{last: -1} }

// Add records that offset has been handed out for processing. Offsets must
// be added in increasing order (the order a partition is consumed in); they
// need not be contiguous, since compaction and transaction markers leave
// gaps in real partitions.
func (p *Partition) Add(offset int64) error {
	if offset <= p.last {
		return fmt.Errorf("offsets: add %d after %d: offsets must increase", offset, p.last)
	}
	p.last = offset
	p.offs = append(p.offs, offset)
	p.done = append(p.done, false)
	return nil
}

// Done marks offset as finished. When that completes a prefix of the
// tracked offsets, it returns the offset to store (the one after the last
// finished record of the prefix, as Kafka expects) and true. An offset that
// is not tracked, or already done, changes nothing.
func (p *Partition) Done(offset int64) (next int64, advanced bool) {
	live := p.offs[p.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i] >= offset })
	if i == len(live) || live[i] != offset || p.done[p.head+i] {
		return 0, false
	}
	p.done[p.head+i] = true
	if i != 0 {
		return 0, false // an earlier record is still running
	}
	for p.head < len(p.offs) && p.done[p.head] {
		next = p.offs[p.head] + 1
		p.head++
	}
	p.compact()
	return next, true
}

// Pending is the number of tracked records not yet released, finished or
// not.
func (p *Partition) Pending() int { return len(p.offs) - p.head }

// compact drops released entries once they make up most of the slices, so
// memory stays proportional to the records in flight.
func (p *Partition) compact() {
	if p.head == len(p.offs) {
		p.offs, p.done, p.head = p.offs[:0], p.done[:0], 0
		return
	}
	if p.head < 1024 || p.head < len(p.offs)/2 {
		return
	}
	n := copy(p.offs, p.offs[p.head:])
	copy(p.done, p.done[p.head:])
	p.offs, p.done, p.head = p.offs[:n], p.done[:n], 0
}
