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
