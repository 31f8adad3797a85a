package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudwego/kitex/pkg/klog"
)

// jsonLines decodes the JSON lines in buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// testKlog returns a Klog writing JSON at slog level lv to the returned
// buffer, passing every klog level, with exit recording its code.
func testKlog(lv slog.Level) (*Klog, *bytes.Buffer, *[]int) {
	var buf bytes.Buffer
	k := NewKlog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: lv})))
	k.SetLevel(klog.LevelTrace)
	var exits []int
	k.exit = func(code int) { exits = append(exits, code) }
	return k, &buf, &exits
}

func TestKlogLevels(t *testing.T) {
	k, buf, exits := testKlog(slog.LevelDebug)
	ctx := context.Background()
	cases := []struct {
		name  string
		log   func()
		level string
	}{
		{"Trace", func() { k.Trace("a", 1) }, "DEBUG"},
		{"Tracef", func() { k.Tracef("a%d", 1) }, "DEBUG"},
		{"CtxTracef", func() { k.CtxTracef(ctx, "a%d", 1) }, "DEBUG"},
		{"Debug", func() { k.Debug("a", 1) }, "DEBUG"},
		{"Debugf", func() { k.Debugf("a%d", 1) }, "DEBUG"},
		{"CtxDebugf", func() { k.CtxDebugf(ctx, "a%d", 1) }, "DEBUG"},
		{"Info", func() { k.Info("a", 1) }, "INFO"},
		{"Infof", func() { k.Infof("a%d", 1) }, "INFO"},
		{"CtxInfof", func() { k.CtxInfof(ctx, "a%d", 1) }, "INFO"},
		{"Notice", func() { k.Notice("a", 1) }, "INFO"},
		{"Noticef", func() { k.Noticef("a%d", 1) }, "INFO"},
		{"CtxNoticef", func() { k.CtxNoticef(ctx, "a%d", 1) }, "INFO"},
		{"Warn", func() { k.Warn("a", 1) }, "WARN"},
		{"Warnf", func() { k.Warnf("a%d", 1) }, "WARN"},
		{"CtxWarnf", func() { k.CtxWarnf(ctx, "a%d", 1) }, "WARN"},
		{"Error", func() { k.Error("a", 1) }, "ERROR"},
		{"Errorf", func() { k.Errorf("a%d", 1) }, "ERROR"},
		{"CtxErrorf", func() { k.CtxErrorf(ctx, "a%d", 1) }, "ERROR"},
	}
	for _, tc := range cases {
		tc.log()
		lines := jsonLines(t, buf)
		if len(lines) != 1 {
			t.Fatalf("%s: %d lines, want 1", tc.name, len(lines))
		}
		l := lines[0]
		// fmt.Sprint("a", 1) is "a1" too.
		if l["level"] != tc.level || l["msg"] != "a1" || l["lib"] != "kitex" {
			t.Errorf("%s: got %v, want level %s, msg a1, lib kitex", tc.name, l, tc.level)
		}
		if _, ok := l["fatal"]; ok {
			t.Errorf("%s: fatal attribute on %v", tc.name, l)
		}
	}
	if len(*exits) != 0 {
		t.Errorf("exit called: %v", *exits)
	}
}

func TestKlogFatal(t *testing.T) {
	k, buf, exits := testKlog(slog.LevelInfo)
	k.Fatal("dead ", "now")
	k.Fatalf("dead %s", "now")
	k.CtxFatalf(context.Background(), "dead %s", "now")
	lines := jsonLines(t, buf)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	for _, l := range lines {
		if l["level"] != "ERROR" || l["msg"] != "dead now" || l["fatal"] != true || l["lib"] != "kitex" {
			t.Errorf("got %v", l)
		}
	}
	if len(*exits) != 3 || (*exits)[0] != 1 {
		t.Errorf("exits %v, want three of 1", *exits)
	}

	// A filtered Fatal still ends the process.
	*exits = nil
	k.SetLevel(klog.LevelFatal + 1)
	k.Fatal("x")
	if buf.Len() != 0 || len(*exits) != 1 {
		t.Errorf("filtered Fatal: output %q, exits %v", buf.String(), *exits)
	}
}

func TestKlogFiltering(t *testing.T) {
	k, buf, _ := testKlog(slog.LevelDebug)
	k.SetLevel(klog.LevelWarn)
	if k.Level() != klog.LevelWarn {
		t.Fatalf("Level %v", k.Level())
	}
	k.Info("no")
	k.Notice("no")
	k.CtxDebugf(context.Background(), "no")
	k.Warn("yes")
	k.CtxErrorf(context.Background(), "yes")
	if lines := jsonLines(t, buf); len(lines) != 2 || lines[0]["msg"] != "yes" || lines[1]["msg"] != "yes" {
		t.Errorf("klog level Warn: %v", lines)
	}

	// The slog logger's level filters too.
	k, buf, _ = testKlog(slog.LevelWarn)
	k.Info("no")
	k.Debugf("no")
	k.Warnf("yes")
	if lines := jsonLines(t, buf); len(lines) != 1 || lines[0]["msg"] != "yes" {
		t.Errorf("slog level Warn: %v", lines)
	}

	// klog's default level is Info.
	var b bytes.Buffer
	k = NewKlog(slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})))
	k.Debug("no")
	k.Info("yes")
	if lines := jsonLines(t, &b); len(lines) != 1 || lines[0]["msg"] != "yes" {
		t.Errorf("default level: %v", lines)
	}

	// SetOutput changes nothing.
	k.SetOutput(&bytes.Buffer{})
	k.Info("still")
	if lines := jsonLines(t, &b); len(lines) != 1 || lines[0]["msg"] != "still" {
		t.Errorf("after SetOutput: %v", lines)
	}
}

type ctxKey struct{}

// ctxHandler records the context value of ctxKey of each record.
type ctxHandler struct {
	slog.Handler
	got *[]any
}

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	*h.got = append(*h.got, ctx.Value(ctxKey{}))
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as), h.got}
}

func TestKlogCtx(t *testing.T) {
	var buf bytes.Buffer
	var got []any
	h := ctxHandler{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), &got}
	k := NewKlog(slog.New(h))
	k.SetLevel(klog.LevelTrace)
	k.exit = func(int) {}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	k.CtxTracef(ctx, "m")
	k.CtxDebugf(ctx, "m")
	k.CtxInfof(ctx, "m")
	k.CtxNoticef(ctx, "m")
	k.CtxWarnf(ctx, "m")
	k.CtxErrorf(ctx, "m")
	k.CtxFatalf(ctx, "m")
	k.CtxWarnf(nil, "nil context") //nolint:staticcheck // a nil context must not crash
	k.Warn("plain")
	if len(got) != 9 {
		t.Fatalf("%d records, want 9", len(got))
	}
	for i, v := range got[:7] {
		if v != "v" {
			t.Errorf("record %d: context value %v, want v", i, v)
		}
	}
	if got[7] != nil || got[8] != nil {
		t.Errorf("context values %v, want nil for the last two", got[7:])
	}
}

// TestKlogInstalled logs through klog's package functions, as Kitex does:
// the line is the adapter's, and its source is the caller's.
func TestKlogInstalled(t *testing.T) {
	prev := klog.DefaultLogger()
	t.Cleanup(func() { klog.SetLogger(prev) })
	var buf bytes.Buffer
	k := NewKlog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{AddSource: true})))
	klog.SetLogger(k)
	klog.Warnf("KITEX: auto retry retryable error, to_service=%s", "gochat.logic")
	klog.Info("info line\n")
	klog.CtxErrorf(context.Background(), "ctx %d", 2)
	lines := jsonLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	if l := lines[0]; l["level"] != "WARN" || l["msg"] != "KITEX: auto retry retryable error, to_service=gochat.logic" || l["lib"] != "kitex" {
		t.Errorf("got %v", l)
	}
	if lines[1]["msg"] != "info line" {
		t.Errorf("trailing newline kept: %q", lines[1]["msg"])
	}
	for _, l := range lines {
		src, _ := l["source"].(map[string]any)
		if f, _ := src["file"].(string); filepath.Base(f) != "klog_test.go" {
			t.Errorf("source %v, want klog_test.go", l["source"])
		}
	}
}
