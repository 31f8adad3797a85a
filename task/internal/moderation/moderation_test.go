package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/webhook"
)

// recaller records Recall calls and answers with resp or err.
type recaller struct {
	mu    sync.Mutex
	calls []*logic.RecallReq
	resp  *logic.RecallResp
	err   error
}

func (r *recaller) Recall(_ context.Context, req *logic.RecallReq) (*logic.RecallResp, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	if r.err != nil {
		return nil, r.err
	}
	if r.resp != nil {
		return r.resp, nil
	}
	return &logic.RecallResp{Seq: 99}, nil
}

// judge is a moderation webhook answering answer with status, recording
// requests.
type judge struct {
	mu      sync.Mutex
	status  int
	answer  string
	bodies  []Request
	headers []http.Header
}

func (j *judge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req Request
	_ = json.Unmarshal(raw, &req)
	j.mu.Lock()
	j.bodies = append(j.bodies, req)
	j.headers = append(j.headers, r.Header.Clone())
	status, answer := j.status, j.answer
	j.mu.Unlock()
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (j *judge) set(status int, answer string) {
	j.mu.Lock()
	j.status, j.answer = status, answer
	j.mu.Unlock()
}

func (j *judge) calls() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.bodies)
}

// lastSeq numbers the messages task makes: 7, 8, 9 ...
var lastSeq atomic.Int64

func init() { lastSeq.Store(6) }

// task returns the task of a new message with body.
func task(body string) *events.TaskRecord {
	return &events.TaskRecord{Kind: events.TaskKind_MODERATE, Moderate: &common.Message{
		ConvId: "p:alice:bob", Seq: lastSeq.Add(1), Sender: "alice", Recipient: "bob", ClientMsgId: "c7",
		ContentType: "text", Body: body, CreatedAtMs: 1700000000123,
	}}
}

func newJob(t *testing.T, cfg Config) (*Job, *metrics.Metrics) {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j, m
}

func verdicts(m *metrics.Metrics, v string) int {
	return int(testutil.ToFloat64(m.Verdicts.WithLabelValues(v)))
}

func TestWordList(t *testing.T) {
	hook := &judge{status: http.StatusOK, answer: `{"action":"allow"}`}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	lg := &recaller{}
	j, m := newJob(t, Config{Words: []string{"  Cheap Pills ", "", "scam"}, URL: srv.URL, Logic: lg, RecallSecret: "adm"})
	ctx := context.Background()
	bad := task("buy CHEAP PILLS now")
	if err := j.Handle(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if len(lg.calls) != 1 || lg.calls[0].Reason != WordReason || lg.calls[0].ConvId != "p:alice:bob" || lg.calls[0].Seq != bad.Moderate.Seq ||
		lg.calls[0].AdminSecret != "adm" || lg.calls[0].WaitMs <= 0 {
		t.Fatalf("recall calls: %+v", lg.calls)
	}
	if hook.calls() != 0 {
		t.Fatal("the webhook was asked about a message the word list rejected")
	}
	if err := j.Handle(ctx, task("cheap flights")); err != nil {
		t.Fatal(err)
	}
	if len(lg.calls) != 1 || hook.calls() != 1 || verdicts(m, verdictRecalled) != 1 || verdicts(m, verdictAllowed) != 1 {
		t.Fatalf("after an allowed message: %d recalls, %d webhook calls", len(lg.calls), hook.calls())
	}
}

func TestWebhookVerdicts(t *testing.T) {
	hook := &judge{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	lg := &recaller{}
	j, m := newJob(t, Config{URL: srv.URL, Secret: "sig", Logic: lg, RecallSecret: "adm"})
	ctx := context.Background()

	hook.set(http.StatusOK, `{"action":"recall","reason":"harassment"}`)
	first := task("you again")
	seq := first.Moderate.Seq
	if err := j.Handle(ctx, first); err != nil {
		t.Fatal(err)
	}
	if len(lg.calls) != 1 || lg.calls[0].Reason != "harassment" {
		t.Fatalf("recall calls: %+v", lg.calls)
	}
	got, h := hook.bodies[0], hook.headers[0]
	want := Request{Conv: "p:alice:bob", Seq: seq, From: "alice", To: "bob", CMID: "c7", ContentType: "text", Body: "you again", TS: 1700000000123}
	if got != want {
		t.Fatalf("webhook request %+v, want %+v", got, want)
	}
	if h.Get(webhook.HeaderIdempotencyKey) != fmt.Sprintf("p:alice:bob:%d", seq) || h.Get(webhook.HeaderSignature) == "" {
		t.Fatalf("headers: %v", h)
	}

	hook.set(http.StatusOK, `{"action":"recall"}`)
	if err := j.Handle(ctx, task("x")); err != nil || lg.calls[1].Reason != DefaultReason {
		t.Fatalf("recall without a reason: %v %+v", err, lg.calls)
	}
	for _, allow := range []string{`{"action":"allow"}`, "", " \n"} {
		hook.set(http.StatusOK, allow)
		if err := j.Handle(ctx, task("fine")); err != nil {
			t.Fatalf("allow %q: %v", allow, err)
		}
	}
	hook.set(http.StatusNoContent, "")
	if err := j.Handle(ctx, task("fine")); err != nil {
		t.Fatal(err)
	}
	if len(lg.calls) != 2 || verdicts(m, verdictAllowed) != 4 || verdicts(m, verdictRecalled) != 2 {
		t.Fatalf("%d recalls, %d allowed", len(lg.calls), verdicts(m, verdictAllowed))
	}

	// Answers the job cannot act on go to the dead-letter topic; a judge
	// that is down is retried.
	for _, bad := range []string{`not json`, `{"action":"delete"}`, `{"action":"recall","reason":7}`} {
		hook.set(http.StatusOK, bad)
		if err := j.Handle(ctx, task("x")); !job.IsPermanent(err) {
			t.Errorf("answer %q: %v, want permanent", bad, err)
		}
	}
	hook.set(http.StatusServiceUnavailable, "busy")
	if err := j.Handle(ctx, task("x")); err == nil || job.IsPermanent(err) {
		t.Fatalf("503: %v, want retryable", err)
	}
	if len(lg.calls) != 2 {
		t.Fatalf("recalls after bad answers: %+v", lg.calls)
	}
	// A reason too long is cut at a character boundary; the verdict stands.
	hook.set(http.StatusOK, `{"action":"recall","reason":"`+strings.Repeat("x", protocol.MaxRecallReason-1)+`é and more"}`)
	if err := j.Handle(ctx, task("x")); err != nil || len(lg.calls) != 3 || lg.calls[2].Reason != strings.Repeat("x", protocol.MaxRecallReason-1) {
		t.Fatalf("long reason: %v %+v", err, lg.calls[len(lg.calls)-1])
	}
}

func TestRecallOutcomes(t *testing.T) {
	lg := &recaller{}
	j, m := newJob(t, Config{Words: []string{"bad"}, Logic: lg, RecallSecret: "adm"})
	ctx := context.Background()
	lg.resp = &logic.RecallResp{AlreadyRecalled: true}
	if err := j.Handle(ctx, task("bad")); err != nil || verdicts(m, verdictAlreadyRecalled) != 1 {
		t.Fatalf("already recalled: %v", err)
	}
	lg.resp = &logic.RecallResp{Seq: 9, Duplicate: true}
	if err := j.Handle(ctx, task("bad")); err != nil || verdicts(m, verdictDuplicate) != 1 || verdicts(m, verdictRecalled) != 0 {
		t.Fatalf("recalled before: %v", err)
	}
	lg.resp = nil
	for _, tc := range []struct {
		err   error
		check func(error) bool
		what  string
	}{
		{errcode.Biz(errcode.Unavailable, "logic down"), func(e error) bool { return e != nil && !job.IsPermanent(e) }, "retryable"},
		{errors.New("connection refused"), func(e error) bool { return e != nil && !job.IsPermanent(e) }, "retryable"},
		{errcode.Biz(errcode.ConvNotFound, "gone"), func(e error) bool { return errors.Is(e, job.ErrSkipped) }, "skipped"},
		{errcode.Biz(errcode.Unauthorized, "bad secret"), func(e error) bool { return e != nil && !job.IsPermanent(e) }, "retryable"},
		{errcode.Biz(errcode.BadField, "no message 7"), job.IsPermanent, "permanent"},
	} {
		lg.err = tc.err
		if err := j.Handle(ctx, task("bad")); !tc.check(err) {
			t.Errorf("logic answering %v: %v, want %s", tc.err, err, tc.what)
		}
	}
}

func TestSkipsAndConfig(t *testing.T) {
	ctx := context.Background()
	off, _ := newJob(t, Config{})
	if err := off.Handle(ctx, task("bad")); !errors.Is(err, job.ErrSkipped) {
		t.Fatalf("no judge: %v", err)
	}
	lg := &recaller{}
	j, _ := newJob(t, Config{Words: []string{"bad"}, Logic: lg, RecallSecret: "adm"})
	recalled := task("")
	recalled.Moderate.Recalled = true
	event := task("reason")
	event.Moderate.ContentType = protocol.ContentTypeRecall
	for _, rec := range []*events.TaskRecord{recalled, event} {
		if err := j.Handle(ctx, rec); !errors.Is(err, job.ErrSkipped) {
			t.Errorf("%+v: %v", rec.Moderate, err)
		}
	}
	if err := j.Handle(ctx, &events.TaskRecord{Kind: events.TaskKind_MODERATE}); !job.IsPermanent(err) {
		t.Fatalf("no payload: %v", err)
	}
	if len(lg.calls) != 0 {
		t.Fatalf("recalls: %+v", lg.calls)
	}
	m, _ := metrics.New(prometheus.NewRegistry())
	if _, err := New(Config{Words: []string{"x"}}, m); err == nil {
		t.Fatal("a judge without a way to recall was accepted")
	}
	if _, err := New(Config{URL: "ftp://x", Logic: lg, RecallSecret: "a"}, m); err == nil {
		t.Fatal("a bad url was accepted")
	}
}

func TestLoadWords(t *testing.T) {
	p := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(p, []byte("# comment\nspam\n\n  cheap pills  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWords(p)
	if err != nil || len(w) != 2 || w[0] != "spam" || w[1] != "cheap pills" {
		t.Fatalf("%q %v", w, err)
	}
	if err := os.WriteFile(p, []byte("ok\n\xff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWords(p); err == nil {
		t.Fatal("a line that is not UTF-8 was accepted")
	}
	if _, err := LoadWords(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// BenchmarkMatchWords: the word list's cost per message, a 100-byte body
// against 1,000 words and phrases none of which it contains (the common
// case, and the slowest: every word is tried).
func BenchmarkMatchWords(b *testing.B) {
	words := make([]string, 1000)
	for i := range words {
		words[i] = fmt.Sprintf("blocked phrase %d", i)
	}
	m, _ := metrics.New(prometheus.NewRegistry())
	j, err := New(Config{Words: words, Logic: &recaller{}, RecallSecret: "x"}, m)
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Hello there, see you at six? ", 4)[:100]
	b.ReportAllocs()
	for b.Loop() {
		if _, hit := j.matchWords(body); hit {
			b.Fatal("matched")
		}
	}
}

func TestCheckAccess(t *testing.T) {
	ctx := context.Background()
	lg := &recaller{}
	j, _ := newJob(t, Config{Words: []string{"x"}, Logic: lg, RecallSecret: "s"})
	lg.err = errcode.Biz(errcode.BadField, "invalid conv_id") // the secret passed
	if err := j.CheckAccess(ctx); err != nil {
		t.Fatalf("accepted secret: %v", err)
	}
	if len(lg.calls) != 1 || lg.calls[0].AdminSecret != "s" || lg.calls[0].ConvId != "" {
		t.Fatalf("probe: %+v", lg.calls)
	}
	lg.err = errcode.Biz(errcode.Unauthorized, "bad admin secret")
	if err := j.CheckAccess(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("refused secret: %v", err)
	}
	lg.err = errcode.Biz(errcode.Unavailable, "no logic")
	if err := j.CheckAccess(ctx); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("logic down: %v", err)
	}
	off, _ := newJob(t, Config{})
	if err := off.CheckAccess(ctx); err != nil {
		t.Fatalf("no judge: %v", err)
	}
}

// A message judged once is not judged again by the same job (its task
// comes again when the message is pushed again as stored), unless the
// judging failed; the memory is bounded.
func TestRepeatsNotJudgedTwice(t *testing.T) {
	hook := &judge{status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	lg := &recaller{}
	j, _ := newJob(t, Config{URL: srv.URL, Logic: lg, RecallSecret: "s"})
	ctx := context.Background()
	rec := task("hello")
	if err := j.Handle(ctx, rec); err == nil || job.IsPermanent(err) {
		t.Fatalf("judge down: %v", err)
	}
	hook.set(http.StatusOK, `{"action":"allow"}`)
	for i, want := range []error{nil, job.ErrSkipped, job.ErrSkipped} {
		if err := j.Handle(ctx, rec); !errors.Is(err, want) && (want != nil || err != nil) {
			t.Fatalf("attempt %d: %v, want %v", i, err, want)
		}
	}
	if hook.calls() != 2 {
		t.Fatalf("%d webhook calls, want 2 (the failed one and the first that worked)", hook.calls())
	}

	r := newRecent(3)
	for _, k := range []string{"a", "b", "c", "a", "d"} {
		r.add(k)
	}
	for k, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true} {
		if r.has(k) != want {
			t.Errorf("after a, b, c, a, d with room for 3: has(%q) = %v", k, !want)
		}
	}
}
