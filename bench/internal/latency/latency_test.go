package latency

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestQuantiles(t *testing.T) {
	var r Recorder
	for i := 1; i <= 100; i++ {
		r.Add(time.Duration(i) * time.Millisecond)
	}
	s := r.Snapshot()
	if s.Quantile(.5) != 50*time.Millisecond || s.Quantile(.99) != 99*time.Millisecond || s.Max() != 100*time.Millisecond {
		t.Fatalf("p50 %v p99 %v max %v", s.Quantile(.5), s.Quantile(.99), s.Max())
	}
	if s.Mean() != 50500*time.Microsecond {
		t.Fatalf("mean %v", s.Mean())
	}
	var buf bytes.Buffer
	if err := s.SVG(&buf, "t"); err != nil || !strings.Contains(buf.String(), "p99 99.00 ms") {
		t.Fatalf("svg: %v\n%s", err, buf.String())
	}
}

func TestEmpty(t *testing.T) {
	var r Recorder
	s := r.Snapshot()
	var buf bytes.Buffer
	if s.Quantile(.99) != 0 || s.SVG(&buf, "empty") != nil {
		t.Fatal("empty summary")
	}
}

func TestBounds(t *testing.T) {
	bs := bounds()
	if len(bs) != 71 || bs[0] != 10*time.Microsecond || bs[50] != time.Second || bs[len(bs)-1] != 100*time.Second {
		t.Fatalf("%d bounds, first %v, 1 s at %v, last %v", len(bs), bs[0], bs[50], bs[len(bs)-1])
	}
	for i := 1; i < len(bs); i++ {
		if bs[i] <= bs[i-1] {
			t.Fatalf("bounds not increasing at %d: %v", i, bs[i-1:i+1])
		}
	}
	// A bucket holds (previous bound, its bound]; above 100 s, one more.
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{0, 0}, {10 * time.Microsecond, 0}, {10*time.Microsecond + 1, 1}, {time.Second, 50}, {time.Second + 1, 51},
		{100 * time.Second, 70}, {100*time.Second + 1, 71}, {time.Hour, 71}} {
		if got := bucketOf(bs, c.d); got != c.want {
			t.Errorf("%v in bucket %d, want %d", c.d, got, c.want)
		}
	}
}

// The axis label of a bucket's upper bound sits at its bar's right edge.
func TestSVGLabels(t *testing.T) {
	var r Recorder
	for range 10 {
		r.Add(900 * time.Microsecond) // bucket (0.79, 1.00] ms
	}
	r.Add(1500 * time.Microsecond) // bucket (1.26, 1.58] ms
	var buf bytes.Buffer
	if err := r.Snapshot().SVG(&buf, "t"); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	// Buckets lo..hi: (0.79, 1.00], (1.00, 1.26], (1.26, 1.58]; bar width
	// (900-60-20)/3; the first label, 1.00 ms, at the first bar's right
	// edge: 60 + 273.3.
	for _, want := range []string{`<text x="333.3" y="374" transform="rotate(45 333.3 374)">1.00 ms</text>`,
		`<title>0.79–1.00 ms: 10</title>`, `<title>1.26–1.58 ms: 1</title>`} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %s:\n%s", want, svg)
		}
	}
	r.Add(time.Hour)
	buf.Reset()
	if err := r.Snapshot().SVG(&buf, "t"); err != nil || !strings.Contains(buf.String(), "<title>&gt; 100000.00 ms: 1</title>") {
		t.Fatalf("no overflow bucket: %v\n%s", err, buf.String())
	}
}

func TestQuantileOf(t *testing.T) {
	var r Recorder
	for i := 1; i <= 90; i++ {
		r.Add(time.Duration(i) * time.Millisecond)
	}
	s := r.Snapshot()
	// 100 messages, 90 recorded: the 10 others are slower than all.
	for _, c := range []struct {
		q    float64
		want time.Duration
		ok   bool
	}{{0, time.Millisecond, true}, {.5, 50 * time.Millisecond, true}, {.9, 90 * time.Millisecond, true}, {.91, 0, false}, {1, 0, false}} {
		if d, ok := s.QuantileOf(c.q, 100); d != c.want || ok != c.ok {
			t.Errorf("q%v of 100: %v %v, want %v %v", c.q, d, ok, c.want, c.ok)
		}
	}
	if d, ok := s.QuantileOf(1, 90); d != 90*time.Millisecond || !ok {
		t.Errorf("all recorded: max %v %v", d, ok)
	}
	var e Recorder
	if _, ok := e.Snapshot().QuantileOf(.5, 3); ok {
		t.Error("nothing recorded of 3: p50 known")
	}
}

func TestSince(t *testing.T) {
	var r Recorder
	for i := range 5 {
		r.Add(time.Duration(5-i) * time.Millisecond)
	}
	s, n := r.Since(0)
	if s.Count() != 5 || n != 5 || s.Quantile(0) != time.Millisecond {
		t.Fatalf("count %d next %d min %v", s.Count(), n, s.Quantile(0))
	}
	r.Add(7 * time.Millisecond)
	if s, n = r.Since(n); s.Count() != 1 || n != 6 || s.Max() != 7*time.Millisecond {
		t.Fatalf("count %d next %d max %v", s.Count(), n, s.Max())
	}
	r.Reset()
	r.Add(time.Millisecond)
	if s, n = r.Since(n); s.Count() != 1 || n != 1 {
		t.Fatalf("after a reset: count %d next %d", s.Count(), n)
	}
}
