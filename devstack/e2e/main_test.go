// Package e2e tests GoChat end to end: each test starts the full stack as
// `make run` does (embedded infrastructure plus the four service binaries
// as processes) and talks to it with real WebSocket clients and Kitex
// clients.
//
// The binaries come from $GOCHAT_BIN_DIR when set (make test builds them
// into ./bin first); otherwise TestMain builds them into a temporary
// directory.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

var binDir string

func TestMain(m *testing.M) {
	binDir = os.Getenv("GOCHAT_BIN_DIR")
	cleanup := func() {}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "gochat-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		binDir = dir
		cmd := exec.Command("go", "build", "-o", dir,
			"github.com/gochat-im/gochat/gateway/cmd/gateway",
			"github.com/gochat-im/gochat/logic/cmd/logic",
			"github.com/gochat-im/gochat/task/cmd/task",
			"github.com/gochat-im/gochat/dataproxy/cmd/dataproxy",
			"github.com/gochat-im/gochat/devstack/cmd/gochat-dev")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building service binaries:", err)
			cleanup()
			os.Exit(1)
		}
	} else if abs, err := filepath.Abs(binDir); err == nil {
		binDir = abs
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// testLogs collects service output and prints it only if the test fails.
type testLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLogs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// env is one running stack plus helpers to use it.
type env struct {
	t     *testing.T
	cfg   stack.Config
	st    *stack.Stack
	logic logicsvc.Client
	logs  *testLogs
}

// startStack starts a stack on dataDir (a fresh one when empty).
func startStack(t *testing.T, cfg stack.Config) *env {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.BinDir = binDir
	logs := &testLogs{}
	cfg.Logs = logs
	// Faster group rebalances than the defaults; harmless warnings from
	// producers, which ignore consumer properties.
	cfg.KafkaConfig = "heartbeat.interval.ms=300,session.timeout.ms=6000"
	for i := range cfg.Ports.Gateway {
		cfg.Ports.Gateway[i] = 0
	}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, cfg, log)
	if err != nil {
		t.Logf("service logs:\n%s", logs.buf.String())
		t.Fatalf("start stack: %v", err)
	}
	e := &env{t: t, cfg: cfg, st: st, logs: logs}
	opts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.LogicService, HostPorts: []string{st.LogicAddr()}, Caller: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	e.logic, err = logicsvc.NewClient(rpcx.LogicService, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("service logs:\n%s", logs.buf.String())
			logs.mu.Unlock()
		}
	})
	return e
}

func (e *env) stop() {
	if e.st != nil {
		e.st.Stop()
		e.st = nil
	}
}

// token issues a token through logic's IssueToken, creating the user.
func (e *env) token(uid, device string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.logic.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: e.st.State().AdminSecret, Uid: uid, Device: device, CreateUser: true})
	if err != nil {
		e.t.Fatalf("IssueToken(%s): %v", uid, err)
	}
	return resp.Token
}

func (e *env) url(gw int, token string) string {
	return e.st.WebSocketURL(gw) + "?token=" + token
}

// webhook records offline-push calls.
type webhook struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []map[string]any
	seen  chan struct{}
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{seen: make(chan struct{}, 100)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(rw, "bad json", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.calls = append(w.calls, m)
		w.mu.Unlock()
		select {
		case w.seen <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// waitCall waits for a call matching match.
func (w *webhook) waitCall(t *testing.T, d time.Duration, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		w.mu.Lock()
		for _, c := range w.calls {
			if match(c) {
				w.mu.Unlock()
				return c
			}
		}
		w.mu.Unlock()
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("webhook: no %s within %v (calls: %v)", what, d, w.calls)
		}
	}
}

// gatewayMetric reads one sample (name with its labels, as the exposition
// format writes it) from the admin endpoint of gateway i; 0 if absent.
func (e *env) gatewayMetric(t *testing.T, i int, sample string) float64 {
	t.Helper()
	return metricAt(t, e.st.State().Ports.GatewayAdmin[i], sample)
}

// dataproxyMetric is gatewayMetric for dataproxy.
func (e *env) dataproxyMetric(t *testing.T, sample string) float64 {
	t.Helper()
	return metricAt(t, e.st.State().Ports.DataProxyAdmin, sample)
}

// metricAt reads one sample from the admin endpoint on port; 0 if absent.
func metricAt(t *testing.T, port int, sample string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return f
		}
	}
	return 0
}
