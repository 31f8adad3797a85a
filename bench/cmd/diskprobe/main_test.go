package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A short probe writes, syncs and reports every sync, and leaves no file
// behind.
func TestProbeReportsEverySync(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	o := options{dir: dir, size: 4096, span: 1 << 20, rate: 50, duration: 300 * time.Millisecond, slow: 0}
	if err := run(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	row := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "| write+fsync |") {
			row = l
		}
	}
	cells := strings.Split(row, "|")
	if len(cells) < 3 {
		t.Fatalf("no result row in:\n%s", text)
	}
	samples := strings.TrimSpace(cells[2])
	// Every sync is slower than 0, so each is listed with its time.
	listed := strings.Count(text, " ms\n")
	if samples == "0" || samples != strconv.Itoa(listed) {
		t.Fatalf("%s samples, %d listed as slow:\n%s", samples, listed, text)
	}
	for _, want := range []string{"write of 4096 bytes + fsync, 50 a second for up to 300ms", "over 100ms:", "slower than 0s (when the write started, UTC"} {
		if !strings.Contains(text, want) {
			t.Fatalf("report lacks %q:\n%s", want, text)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("left %v in the directory (%v)", ents, err)
	}
}

func TestOptionsRefused(t *testing.T) {
	ok := options{dir: t.TempDir(), size: 4096, span: 1 << 20, rate: 10, duration: time.Second, slow: time.Millisecond}
	for name, mod := range map[string]func(*options){
		"size 0":          func(o *options) { o.size = 0 },
		"span below size": func(o *options) { o.span = 100 },
		"rate 0":          func(o *options) { o.rate = 0 },
		"rate 1e6":        func(o *options) { o.rate = 1_000_000 },
		"no duration":     func(o *options) { o.duration = 0 },
	} {
		o := ok
		mod(&o)
		if err := run(context.Background(), o, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o := ok
	o.dir = t.TempDir() + "/missing"
	if err := run(context.Background(), o, &bytes.Buffer{}); err == nil {
		t.Error("a missing directory: accepted")
	}
}

// A cancelled probe (Ctrl-C) stops, reports what it measured and removes
// its file.
func TestCancelledProbeReportsAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	// An hour's probe: only the cancel ends it.
	o := options{dir: dir, size: 4096, span: 1 << 20, rate: 50, duration: time.Hour, slow: time.Hour}
	if err := run(ctx, o, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| write+fsync |") {
		t.Fatalf("no report:\n%s", out.String())
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("left %v in the directory (%v)", ents, err)
	}
}
