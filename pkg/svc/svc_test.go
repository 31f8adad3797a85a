package svc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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

// Probe answers 0 only for a ready service, asks a wildcard address on
// loopback, and says why it failed otherwise.
func TestProbe(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "not ready: dataproxy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name, admin string
		ready       bool
		want        int
		says        string
	}{
		{"ready", "127.0.0.1:" + port, true, 0, "200 OK ok"},
		{"wildcard host asked on loopback", "0.0.0.0:" + port, true, 0, "http://127.0.0.1:" + port + "/readyz"},
		{"empty host", ":" + port, true, 0, "200 OK"},
		{"not ready", "127.0.0.1:" + port, false, 1, "503 Service Unavailable not ready: dataproxy"},
		{"nothing listening", closedAddr, true, 1, "connection refused"},
		{"admin server off", "", true, 1, "-admin-listen is empty"},
		{"malformed", "nonsense", true, 1, "missing port"},
	} {
		ready = tc.ready
		var out strings.Builder
		if got := Probe(context.Background(), tc.admin, &out); got != tc.want || !strings.Contains(out.String(), tc.says) {
			t.Errorf("%s: status %d, output %q; want %d and %q", tc.name, got, out.String(), tc.want, tc.says)
		}
	}
}
