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

// bucket bounds: 10 per decade from 10 µs to 100 s.
func bounds() []time.Duration {
	var b []time.Duration
	for e := -5.0; e < 2; e += 0.1 {
		b = append(b, time.Duration(math.Pow(10, e+0.1)*float64(time.Second)))
	}
	return b
}

// SVG writes a histogram of the samples (log-scaled time axis) with the
// p50 and p99 marked.
func (s Summary) SVG(w io.Writer, title string) error {
	bs := bounds()
	counts := make([]int, len(bs))
	for _, d := range s.sorted {
		i, _ := slices.BinarySearch(bs, d)
		counts[min(i, len(bs)-1)]++
	}
	lo, hi := 0, len(bs)-1
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
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a7bd0"><title>≤ %s ms: %d</title></rect>`+"\n",
			x, top+plotH-h, math.Max(bw-1, 1), h, Ms(bs[i]), counts[i])
		if (i-lo)%5 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" transform="rotate(45 %.1f %.0f)">%s ms</text>`+"\n", x, H-bottom+14, x, H-bottom+14, Ms(bs[i]))
		}
	}
	mark := func(q float64, label, color string) {
		d := s.Quantile(q)
		i, _ := slices.BinarySearch(bs, d)
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

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
