package offlinepush

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newMetrics(t *testing.T) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func task() *events.TaskRecord {
	return &events.TaskRecord{Kind: events.TaskKind_OFFLINE_PUSH, OfflinePush: &events.OfflinePush{
		Uid: "bob", ConvId: "p:alice:bob", Seq: 7, Sender: "alice",
		ContentType: "text", Preview: "hi bob", CreatedAtMs: 1700000000123,
	}}
}

// recorder is a webhook that answers with the statuses it is given, in
// order (the last one repeats), and records every request.
type recorder struct {
	mu       sync.Mutex
	statuses []int
	headers  []http.Header
	bodies   [][]byte
	extra    http.Header
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	n := len(r.bodies)
	r.headers = append(r.headers, req.Header.Clone())
	r.bodies = append(r.bodies, body)
	code := r.statuses[min(n, len(r.statuses)-1)]
	r.mu.Unlock()
	for k, v := range r.extra {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, "status body")
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func newJob(t *testing.T, url, secret string) (*Job, *metrics.Metrics) {
	t.Helper()
	m := newMetrics(t)
	j, err := New(Config{URL: url, Secret: secret, Timeout: 2 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j, m
}

func TestSuccessBodyAndHeaders(t *testing.T) {
	rec := &recorder{statuses: []int{http.StatusNoContent}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	j, m := newJob(t, srv.URL, "")

	if err := j.Handle(context.Background(), task()); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if rec.calls() != 1 {
		t.Fatalf("calls = %d", rec.calls())
	}
	h := rec.headers[0]
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if k := h.Get(HeaderIdempotencyKey); k != "p:alice:bob:7:bob" {
		t.Errorf("Idempotency-Key = %q", k)
	}
	if s := h.Get(HeaderSignature); s != "" {
		t.Errorf("signature without a secret: %q", s)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"uid": "bob", "conv": "p:alice:bob", "seq": 7.0, "from": "alice",
		"content_type": "text", "preview": "hi bob", "ts": 1700000000123.0}
	if len(got) != len(want) {
		t.Errorf("body has fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("body[%s] = %v, want %v", k, got[k], v)
		}
	}
	if n := testutil.CollectAndCount(m.Webhook); n != 1 {
		t.Errorf("webhook histogram series = %d, want 1", n)
	}
}

func TestSignature(t *testing.T) {
	rec := &recorder{statuses: []int{http.StatusOK}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	j, _ := newJob(t, srv.URL, "s3cret")
	if err := j.Handle(context.Background(), task()); err != nil {
		t.Fatal(err)
	}
	sig := rec.headers[0].Get(HeaderSignature)
	if sig == "" || sig != Sign("s3cret", rec.bodies[0]) {
		t.Fatalf("signature %q does not match the body", sig)
	}
	// A known vector, so the scheme cannot change silently: HMAC-SHA256 of
	// "{}" under "key".
	if got := Sign("key", []byte("{}")); got != "a777724d943eb48dc69bca8a4a6d57a04db3f9ec7e1de4e581e860265bdf3032" {
		t.Fatalf("Sign(key, {}) = %s", got)
	}
}

func TestRetryThenSuccessSameKey(t *testing.T) {
	rec := &recorder{statuses: []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusOK}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	j, _ := newJob(t, srv.URL, "k")
	for i := 0; i < 3; i++ {
		err := j.Handle(context.Background(), task())
		if err == nil || job.IsPermanent(err) {
			t.Fatalf("attempt %d: want a retryable error, got %v", i+1, err)
		}
	}
	if err := j.Handle(context.Background(), task()); err != nil {
		t.Fatalf("last attempt: %v", err)
	}
	if rec.calls() != 4 {
		t.Fatalf("calls = %d", rec.calls())
	}
	// Every attempt of one task carries the same key and an identical,
	// identically signed body.
	for i, h := range rec.headers {
		if h.Get(HeaderIdempotencyKey) != rec.headers[0].Get(HeaderIdempotencyKey) || string(rec.bodies[i]) != string(rec.bodies[0]) ||
			h.Get(HeaderSignature) != Sign("k", rec.bodies[i]) {
			t.Fatalf("attempt %d differs: %v %s", i, h, rec.bodies[i])
		}
	}
}

func TestPermanent4xx(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusUnprocessableEntity} {
		rec := &recorder{statuses: []int{code}}
		srv := httptest.NewServer(rec)
		j, _ := newJob(t, srv.URL, "")
		err := j.Handle(context.Background(), task())
		srv.Close()
		if !job.IsPermanent(err) {
			t.Errorf("status %d: want permanent, got %v", code, err)
		}
	}
	for _, code := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusFound, http.StatusTooManyRequests} {
		rec := &recorder{statuses: []int{code}}
		srv := httptest.NewServer(rec)
		j, _ := newJob(t, srv.URL, "")
		err := j.Handle(context.Background(), task())
		srv.Close()
		if err == nil || job.IsPermanent(err) {
			t.Errorf("status %d: want retryable, got %v", code, err)
		}
	}
}

func TestRetryAfterHint(t *testing.T) {
	rec := &recorder{statuses: []int{http.StatusTooManyRequests}, extra: http.Header{"Retry-After": {"7"}}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	j, _ := newJob(t, srv.URL, "")
	err := j.Handle(context.Background(), task())
	if job.RetryAfterHint(err) != 7*time.Second {
		t.Fatalf("hint = %v (%v)", job.RetryAfterHint(err), err)
	}
}

func TestTransportErrorAndTimeout(t *testing.T) {
	// A closed server: connection refused, retryable.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	j, _ := newJob(t, url, "")
	if err := j.Handle(context.Background(), task()); err == nil || job.IsPermanent(err) {
		t.Fatalf("refused: want retryable, got %v", err)
	}

	// A server slower than the attempt timeout.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	m := newMetrics(t)
	js, err := New(Config{URL: slow.URL, Timeout: 50 * time.Millisecond}, m)
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	err = js.Handle(context.Background(), task())
	if !errors.Is(err, context.DeadlineExceeded) || job.IsPermanent(err) {
		t.Fatalf("timeout: want a retryable deadline error, got %v", err)
	}
}

func TestSkippedAndInvalid(t *testing.T) {
	j, _ := newJob(t, "", "")
	if err := j.Handle(context.Background(), task()); !errors.Is(err, job.ErrSkipped) {
		t.Fatalf("no url: %v", err)
	}
	rec := &recorder{statuses: []int{http.StatusOK}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	j2, _ := newJob(t, srv.URL, "")
	if err := j2.Handle(context.Background(), &events.TaskRecord{Kind: events.TaskKind_OFFLINE_PUSH}); !job.IsPermanent(err) {
		t.Fatalf("missing payload: %v", err)
	}
	for _, bad := range []string{"ftp://x", "http://", "::"} {
		if _, err := New(Config{URL: bad}, newMetrics(t)); err == nil {
			t.Errorf("url %q accepted", bad)
		}
	}
}
