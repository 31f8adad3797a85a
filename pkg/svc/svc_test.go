package svc

import (
	"log/slog"
	"testing"

	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/gochat-im/gochat/pkg/obs"
)

// TestLoggerInstallsKlog checks that the service logger is Kitex's logger
// too, keeping Kitex's lines below warnings out.
func TestLoggerInstallsKlog(t *testing.T) {
	prevSlog, prevKlog := slog.Default(), klog.DefaultLogger()
	t.Cleanup(func() {
		slog.SetDefault(prevSlog)
		klog.SetLogger(prevKlog)
	})
	c := Common{LogFormat: "json", LogLevel: "info"}
	log, err := c.Logger("test")
	if err != nil {
		t.Fatal(err)
	}
	if slog.Default() != log {
		t.Error("service logger is not slog's default")
	}
	k, ok := klog.DefaultLogger().(*obs.Klog)
	if !ok {
		t.Fatalf("klog logger is %T, want *obs.Klog", klog.DefaultLogger())
	}
	if k.Level() != klog.LevelWarn {
		t.Errorf("klog level %v, want %v", k.Level(), klog.LevelWarn)
	}
}
