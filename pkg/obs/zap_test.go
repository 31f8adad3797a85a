package obs

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func testZap(lv slog.Level, opts ...zap.Option) (*zap.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: lv}))
	return NewZapLogger(log).WithOptions(opts...), &buf
}

func TestZapLevels(t *testing.T) {
	var buf bytes.Buffer
	core := NewZapCore(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cases := []struct {
		zl       zapcore.Level
		level    string
		zapLevel any
	}{
		{zapcore.DebugLevel, "DEBUG", nil},
		{zapcore.InfoLevel, "INFO", nil},
		{zapcore.WarnLevel, "WARN", nil},
		{zapcore.ErrorLevel, "ERROR", nil},
		{zapcore.DPanicLevel, "ERROR", "dpanic"},
		{zapcore.PanicLevel, "ERROR", "panic"},
		{zapcore.FatalLevel, "ERROR", "fatal"},
	}
	for _, tc := range cases {
		if !core.Enabled(tc.zl) {
			t.Errorf("%v not enabled", tc.zl)
		}
		// Write, not a Logger: zap's Logger would panic or exit after
		// the last three.
		if err := core.Write(zapcore.Entry{Level: tc.zl, Time: time.Now(), Message: "m"}, nil); err != nil {
			t.Fatal(err)
		}
		lines := jsonLines(t, &buf)
		if len(lines) != 1 {
			t.Fatalf("%v: %d lines", tc.zl, len(lines))
		}
		if l := lines[0]; l["level"] != tc.level || l["msg"] != "m" || l["zap_level"] != tc.zapLevel {
			t.Errorf("%v: got %v, want level %s, zap_level %v", tc.zl, l, tc.level, tc.zapLevel)
		}
	}
}

func TestZapFiltering(t *testing.T) {
	lg, buf := testZap(slog.LevelWarn)
	if lg.Core().Enabled(zapcore.InfoLevel) || !lg.Core().Enabled(zapcore.WarnLevel) {
		t.Error("Enabled does not follow the slog level")
	}
	lg.Debug("no")
	lg.Info("no", zap.String("k", "v"))
	lg.Warn("yes")
	lg.Error("yes")
	lines := jsonLines(t, buf)
	if len(lines) != 2 || lines[0]["msg"] != "yes" || lines[1]["level"] != "ERROR" {
		t.Errorf("got %v", lines)
	}
}

type obj struct{}

func (obj) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", "o")
	enc.AddInt("n", 2)
	return nil
}

type stringer struct{}

func (stringer) String() string { return "str" }

func TestZapFields(t *testing.T) {
	lg, buf := testZap(slog.LevelDebug)
	ts := time.Date(2026, 11, 28, 18, 26, 59, 0, time.UTC)
	lg.Named("etcd-client").Warn("retrying of unary invoker failed",
		zap.String("target", "etcd-endpoints://0x1/127.0.0.1:2379"),
		zap.Int("attempt", 3),
		zap.Uint8("u8", 8),
		zap.Bool("ok", false),
		zap.Float64("f", 1.5),
		zap.Duration("backoff", 25*time.Millisecond),
		zap.Time("at", ts),
		zap.Error(errors.New("context deadline exceeded")),
		zap.Strings("endpoints", []string{"a", "b"}),
		zap.Object("obj", obj{}),
		zap.Stringer("s", stringer{}),
		zap.Complex128("c", 1+2i),
		zap.ByteString("bs", []byte("bytes")),
		zap.Any("any", map[string]int{"x": 1}),
		zap.Skip(),
	)
	lines := jsonLines(t, buf)
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	want := map[string]any{
		"level":     "WARN",
		"msg":       "retrying of unary invoker failed",
		"logger":    "etcd-client",
		"target":    "etcd-endpoints://0x1/127.0.0.1:2379",
		"attempt":   float64(3),
		"u8":        float64(8),
		"ok":        false,
		"f":         1.5,
		"backoff":   float64(25 * time.Millisecond),
		"at":        "2026-11-28T18:26:59Z",
		"error":     "context deadline exceeded",
		"endpoints": []any{"a", "b"},
		"obj":       map[string]any{"name": "o", "n": float64(2)},
		"s":         "str",
		"c":         "(1+2i)",
		"bs":        "bytes",
		"any":       map[string]any{"x": float64(1)},
	}
	got := lines[0]
	delete(got, "time")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	// The fields keep their order.
	lg.Info("order", zap.Int("b", 1), zap.Int("a", 2), zap.Int("c", 3))
	s := buf.String()
	if !(strings.Index(s, `"b"`) < strings.Index(s, `"a"`) && strings.Index(s, `"a"`) < strings.Index(s, `"c"`)) {
		t.Errorf("order lost: %s", s)
	}
}

func TestZapWithAndNamespace(t *testing.T) {
	lg, buf := testZap(slog.LevelDebug)
	parent := lg.With(zap.String("p", "1"))
	a := parent.With(zap.String("child", "a"))
	b := parent.With(zap.Namespace("ns"), zap.String("in", "x"))
	a.Info("a", zap.Int("n", 1))
	b.Info("b", zap.Int("n", 2))
	parent.Info("p", zap.Namespace("outer"), zap.Int("n", 3), zap.Namespace("inner"), zap.Int("m", 4))
	parent.Info("p2")
	lines := jsonLines(t, buf)
	if len(lines) != 4 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		delete(l, "time")
		delete(l, "level")
	}
	want := []map[string]any{
		{"msg": "a", "p": "1", "child": "a", "n": float64(1)},
		{"msg": "b", "p": "1", "ns": map[string]any{"in": "x", "n": float64(2)}},
		{"msg": "p", "p": "1", "outer": map[string]any{"n": float64(3), "inner": map[string]any{"m": float64(4)}}},
		{"msg": "p2", "p": "1"},
	}
	for i := range want {
		if !reflect.DeepEqual(lines[i], want[i]) {
			t.Errorf("line %d: got %v, want %v", i, lines[i], want[i])
		}
	}
}

func TestZapStack(t *testing.T) {
	lg, buf := testZap(slog.LevelDebug, zap.AddStacktrace(zapcore.ErrorLevel))
	lg.Error("bad")
	lines := jsonLines(t, buf)
	if s, _ := lines[0]["stack"].(string); !strings.Contains(s, "TestZapStack") {
		t.Errorf("stack %q", lines[0]["stack"])
	}
}

func TestEtcdLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("svc", "logic")
	EtcdLogger(log).Warn("w", zap.String("k", "v"))
	l := jsonLines(t, &buf)[0]
	if l["lib"] != "etcd" || l["svc"] != "logic" || l["k"] != "v" || l["level"] != "WARN" {
		t.Errorf("got %v", l)
	}

	// nil: slog.Default() as it is when the logger is made.
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	slog.SetDefault(log)
	lg := EtcdLogger(nil)
	slog.SetDefault(prev)
	lg.Error("e")
	if l := jsonLines(t, &buf); len(l) != 1 || l[0]["lib"] != "etcd" || l[0]["msg"] != "e" {
		t.Errorf("nil logger: %v", l)
	}
}
