package wsload

import (
	"math/bits"
	"time"
)

// Histogram counts durations in log-linear microsecond buckets: exact below
// 64 µs, then 32 buckets per power of two (at most ~3% error), so it is
// small, fixed in size, and histograms from several workers merge by
// adding counts.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSub     = 32
	histBuckets = 64 + 40*histSub
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	e := bits.Len64(us) - 6 // us >> e is in [32, 64)
	return 64 + (e-1)*histSub + int(us>>e) - histSub
}

// lowerBound returns the smallest value (µs) in bucket i.
func lowerBound(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	i -= 64
	e := i/histSub + 1
	return uint64(i%histSub+histSub) << e
}

// Add records d.
func (h *Histogram) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := bucketOf(uint64(d / time.Microsecond))
	if i >= histBuckets {
		i = histBuckets - 1
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value at quantile q (0..1) at bucket precision: the
// lower bound of the bucket holding it (at most Max). It is exact below
// 64 µs and otherwise up to ~3% (1/32) below the value, never above it.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(lowerBound(i)) * time.Microsecond
			return min(v, h.max)
		}
	}
	return h.max
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Sparse is a histogram's non-empty buckets, for reports between
// processes.
type Sparse struct {
	Buckets [][2]uint64 `json:"b,omitempty"` // bucket index, count
	Max     int64       `json:"max,omitempty"`
}

// Sparse returns h's non-empty buckets.
func (h *Histogram) Sparse() Sparse {
	s := Sparse{Max: int64(h.max)}
	for i, c := range h.counts {
		if c != 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// FromSparse rebuilds a histogram from Sparse.
func FromSparse(s Sparse) *Histogram {
	h := NewHistogram()
	for _, b := range s.Buckets {
		if b[0] < histBuckets {
			h.counts[b[0]] += b[1]
			h.n += b[1]
		}
	}
	h.max = time.Duration(s.Max)
	return h
}
