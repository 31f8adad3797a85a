// Package latency records latencies and reports them: percentiles, a text
// table and an SVG histogram with log-scaled buckets. A Recorder is safe
// for concurrent use.
package latency

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Recorder collects latency samples.
type Recorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

// Add records one sample.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

// Snapshot returns a sorted copy of the samples recorded so far.
func (r *Recorder) Snapshot() Summary {
	r.mu.Lock()
	s := slices.Clone(r.samples)
	r.mu.Unlock()
	slices.Sort(s)
	return Summary{sorted: s}
}

// Since returns the samples recorded after the first from, sorted, and
// the number recorded so far, to pass as from next time: a progress line
// can summarize the last interval without copying and sorting every
// sample of the run. After a Reset, from counts from the start again.
func (r *Recorder) Since(from int) (Summary, int) {
	r.mu.Lock()
	n := len(r.samples)
	if from > n {
		from = 0
	}
	s := slices.Clone(r.samples[from:])
	r.mu.Unlock()
	slices.Sort(s)
	return Summary{sorted: s}, n
}

// Reset drops the samples (after a warm-up).
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.samples = r.samples[:0]
	r.mu.Unlock()
}

// Summary is a sorted set of samples.
type Summary struct{ sorted []time.Duration }

// Count is the number of samples.
func (s Summary) Count() int { return len(s.sorted) }

// Quantile returns the q-quantile (0..1) by the nearest-rank method.
func (s Summary) Quantile(q float64) time.Duration {
	if len(s.sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.sorted)))) - 1
	i = max(0, min(i, len(s.sorted)-1))
	return s.sorted[i]
}

// QuantileOf returns the q-quantile (nearest rank) of total samples of
// which s holds the Count() smallest: the other total-Count() (such as
// messages that never arrived) were not recorded but are known to be
// larger than every recorded sample. ok is false when the quantile falls
// among those; the value is then unknown and d is zero. With total at or
// below Count() it is Quantile.
func (s Summary) QuantileOf(q float64, total int) (d time.Duration, ok bool) {
	n := len(s.sorted)
	if total <= n {
		return s.Quantile(q), true
	}
	i := int(math.Ceil(q*float64(total))) - 1
	i = max(0, i)
	if i >= n {
		return 0, false
	}
	return s.sorted[i], true
}

// Max is the largest sample.
func (s Summary) Max() time.Duration { return s.Quantile(1) }

// Mean is the average sample.
func (s Summary) Mean() time.Duration {
	if len(s.sorted) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.sorted {
		sum += d
	}
	return sum / time.Duration(len(s.sorted))
}

// Ms formats d in milliseconds with two decimals.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// Line is a one-line summary for progress output.
func (s Summary) Line() string {
	return fmt.Sprintf("n=%d p50=%sms p99=%sms max=%sms", s.Count(), Ms(s.Quantile(.5)), Ms(s.Quantile(.99)), Ms(s.Max()))
}

// Table writes percentiles as a Markdown table row set.
func (s Summary) Table(w io.Writer, name string) {
	fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", name, s.Count(), Ms(s.Mean()), Ms(s.Quantile(.5)),
		Ms(s.Quantile(.9)), Ms(s.Quantile(.99)), Ms(s.Quantile(.999)), Ms(s.Max()))
}

// TableHeader is the header matching Table.
const TableHeader = "| latency | samples | mean ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"

// bounds returns the upper bounds of the histogram's buckets, 10 per
// decade from 10 µs to 100 s: bucket i holds the samples in
// (bounds[i-1], bounds[i]], bucket 0 those up to 10 µs, and one more
// bucket after the last bound holds those above 100 s.
func bounds() []time.Duration {
	var b []time.Duration
	for k := -50; k <= 20; k++ { // 10^(k/10) seconds
		b = append(b, time.Duration(math.Round(math.Pow(10, float64(k)/10)*float64(time.Second))))
	}
	return b
}

// bucketOf returns the index of the bucket holding d (len(bs) for the
// bucket above the last bound).
func bucketOf(bs []time.Duration, d time.Duration) int {
	i, _ := slices.BinarySearch(bs, d)
	return i
}

// SVG writes a histogram of the samples (log-scaled time axis) with the
// p50 and p99 marked. The axis labels each sit at the right edge of a bar
// and give that bar's upper bound.
func (s Summary) SVG(w io.Writer, title string) error {
	bs := bounds()
	counts := make([]int, len(bs)+1)
	for _, d := range s.sorted {
		counts[bucketOf(bs, d)]++
	}
	lo, hi := 0, len(counts)-1
	for lo < hi && counts[lo] == 0 {
		lo++
	}
	for hi > lo && counts[hi] == 0 {
		hi--
	}
	peak := slices.Max(counts[lo : hi+1])
	const W, H, left, bottom, top = 900.0, 420.0, 60.0, 60.0, 50.0
	n := hi - lo + 1
	bw := (W - left - 20) / float64(n)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="25" font-size="15">%s</text>`+"\n", left, esc(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="42">%s</text>`+"\n", left, esc(s.Line()))
	plotH := H - bottom - top
	for i := lo; i <= hi; i++ {
		h := 0.0
		if peak > 0 {
			h = plotH * float64(counts[i]) / float64(peak)
		}
		x := left + float64(i-lo)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a7bd0"><title>%s: %d</title></rect>`+"\n",
			x, top+plotH-h, math.Max(bw-1, 1), h, esc(bucketName(bs, i)), counts[i])
		if (i-lo)%5 == 0 && i < len(bs) {
			xr := x + bw // the right edge, where the bucket's upper bound is
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" transform="rotate(45 %.1f %.0f)">%s ms</text>`+"\n", xr, H-bottom+14, xr, H-bottom+14, Ms(bs[i]))
		}
	}
	mark := func(q float64, label, color string) {
		d := s.Quantile(q)
		i := bucketOf(bs, d)
		x := left + (float64(i-lo)+0.5)*bw
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-dasharray="4"/><text x="%.1f" y="%.0f" fill="%s">%s %s ms</text>`+"\n",
			x, top, x, top+plotH, color, x+3, top+12, color, label, Ms(d))
	}
	if s.Count() > 0 {
		mark(.5, "p50", "#2a2")
		mark(.99, "p99", "#d22")
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top+plotH, W-20, top+plotH)
	fmt.Fprintf(&b, `<text x="10" y="%.0f" transform="rotate(-90 10 %.0f)">messages (peak %d)</text>`+"\n", top+plotH/2, top+plotH/2, peak)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// bucketName describes bucket i's range for the SVG's tooltips.
func bucketName(bs []time.Duration, i int) string {
	switch {
	case i == 0:
		return "≤ " + Ms(bs[0]) + " ms"
	case i == len(bs):
		return "> " + Ms(bs[i-1]) + " ms"
	}
	return Ms(bs[i-1]) + "–" + Ms(bs[i]) + " ms"
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
