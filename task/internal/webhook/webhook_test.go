package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochat-im/gochat/task/internal/job"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if d := retryAfter("7", now); d != 7*time.Second {
		t.Errorf("seconds form: %v", d)
	}
	if d := retryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now); d != 90*time.Second {
		t.Errorf("date form: %v", d)
	}
	for _, v := range []string{"", "-3", "soon", now.Add(-time.Hour).Format(http.TimeFormat)} {
		if d := retryAfter(v, now); d != 0 {
			t.Errorf("retryAfter(%q) = %v", v, d)
		}
	}
}

// Post returns a 2xx answer's body, refuses an oversized one for good, and
// sends the body, key and signature it was given.
func TestPostAnswer(t *testing.T) {
	var big atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"x":1}` || r.Header.Get(HeaderIdempotencyKey) != "k1" ||
			r.Header.Get(HeaderSignature) != Sign("s", body) || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if big.Load() {
			_, _ = io.WriteString(w, strings.Repeat("x", MaxAnswer+1))
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Secret: "s", Timeout: 2 * time.Second, KeepAnswer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Post(context.Background(), []byte(`{"x":1}`), "k1")
	if err != nil || string(got) != `{"ok":true}` {
		t.Fatalf("answer %q, %v", got, err)
	}
	big.Store(true)
	if _, err := c.Post(context.Background(), []byte(`{"x":1}`), "k1"); !job.IsPermanent(err) {
		t.Fatalf("oversized answer: %v", err)
	}
	if _, err := c.Post(context.Background(), []byte(`{}`), "k1"); !job.IsPermanent(err) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("400: %v", err)
	}
	// Without KeepAnswer (offline push) any 2xx is success, however long.
	drop, err := New(Config{URL: srv.URL, Secret: "s", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	if got, err := drop.Post(context.Background(), []byte(`{"x":1}`), "k1"); err != nil || got != nil {
		t.Fatalf("long answer without KeepAnswer: %q %v", got, err)
	}
	for _, bad := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := New(Config{URL: bad}); err == nil {
			t.Errorf("url %q accepted", bad)
		}
	}
}
