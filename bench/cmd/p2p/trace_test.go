package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The trace lists deliveries in send order, times in ms from the run's
// first scheduled send, split at logic's stamp when there is one.
func TestWriteTrace(t *testing.T) {
	const ms = int64(1e6)
	t0 := int64(1764330000000) * ms // on a whole millisecond, like a stamp
	b := &bench{traceLog: []traceRow{
		{idx: 11, scheduled: t0 + 2*ms, sent: t0 + 2*ms + ms/2, stamped: t0/ms + 5, arrived: t0 + 9*ms},
		{idx: 10, scheduled: t0, sent: t0 + ms/4, stamped: t0/ms + 3, arrived: t0 + 7*ms + ms/2},
		{idx: 12, scheduled: t0 + 4*ms, sent: t0 + 4*ms, arrived: t0 + 6*ms},
	}}
	path := filepath.Join(t.TempDir(), "trace.csv")
	start, n, err := b.writeTrace(path)
	if err != nil {
		t.Fatal(err)
	}
	if start.UnixNano() != t0 || n != 3 {
		t.Fatalf("trace of %d deliveries from %v, want 3 from the first one's scheduled send", n, start)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"idx,scheduled_ms,sent_ms,stamped_ms,arrived_ms,delivery_ms,to_logic_ms,from_logic_ms",
		"10,0.000,0.250,3,7.500,7.500,2.750,4.500",
		"11,2.000,2.500,5,9.000,7.000,2.500,4.000",
		"12,4.000,4.000,,6.000,2.000,,",
		"",
	}, "\n")
	if string(got) != want {
		t.Fatalf("trace:\n%s\nwant:\n%s", got, want)
	}
}
