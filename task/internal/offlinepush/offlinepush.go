// Package offlinepush is the job that tells an application backend, through
// an HTTP webhook, that a user who is offline has a new message, so the
// backend can send a mobile push notification.
//
// Each attempt is one POST of a small JSON document. Deliveries are at least
// once (a task can be redone after a crash or a rebalance), so every request
// carries an Idempotency-Key the receiver can deduplicate on, and, when a
// secret is configured, an HMAC-SHA256 signature of the body so the receiver
// can trust it.
//
// A Job is safe for concurrent use; it shares one HTTP client (and its
// connection pool) between all attempts.
package offlinepush

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
)

// Header names of the webhook contract.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = "X-GoChat-Signature"
)

// Config configures the job.
type Config struct {
	// URL receives the POSTs. Empty disables the job: tasks are counted as
	// skipped and acknowledged.
	URL string
	// Secret, when set, signs each body: X-GoChat-Signature is the hex
	// HMAC-SHA256 of the exact body bytes under Secret.
	Secret string
	// Timeout bounds one attempt, connection included. Zero means 5 s.
	Timeout time.Duration
	// MaxConns bounds idle keep-alive connections kept to the webhook host;
	// set it to the number of workers. Zero means 64.
	MaxConns int
}

// Payload is the JSON body of a webhook call.
type Payload struct {
	UID         string `json:"uid"`          // the offline recipient
	Conv        string `json:"conv"`         // conversation id
	Seq         int64  `json:"seq"`          // the message's sequence number in conv
	From        string `json:"from"`         // the sender's uid
	ContentType string `json:"content_type"` // the message's content type
	Preview     string `json:"preview"`      // a short preview of the content
	TS          int64  `json:"ts"`           // message creation time, Unix milliseconds
}

// Job is the offline push job.
type Job struct {
	cfg    Config
	client *http.Client
	m      *metrics.Metrics
}

var _ job.Handler = (*Job)(nil)

// maxErrBody is how much of an error response is kept in the error message.
const maxErrBody = 256

// New checks cfg and returns the job.
func New(cfg Config, m *metrics.Metrics) (*Job, error) {
	if cfg.URL != "" {
		u, err := url.Parse(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("webhook url: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhook url %q: want http:// or https:// with a host", cfg.URL)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	if m == nil {
		return nil, errors.New("offlinepush: nil metrics")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = cfg.MaxConns
	tr.MaxIdleConnsPerHost = cfg.MaxConns
	client := &http.Client{
		Transport: tr,
		// A redirect of a POST is a configuration error on one side or the
		// other; following it would turn the POST into a GET. Report it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Job{cfg: cfg, client: client, m: m}, nil
}

// Close releases idle connections.
func (j *Job) Close() { j.client.CloseIdleConnections() }

// IdempotencyKey is the key of one notification: "<conv>:<seq>:<uid>".
// Every attempt and every redelivery of the same task carries the same key.
func IdempotencyKey(p *events.OfflinePush) string {
	return p.ConvId + ":" + strconv.FormatInt(p.Seq, 10) + ":" + p.Uid
}

// Sign returns the hex HMAC-SHA256 of body under secret, the value of
// X-GoChat-Signature. Receivers compute the same over the raw body and
// compare with hmac.Equal.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Handle makes one delivery attempt. 2xx is success; 408, 429, 5xx, any
// other status and transport errors are retryable (with the server's
// Retry-After as a hint); other 4xx are permanent.
func (j *Job) Handle(ctx context.Context, rec *events.TaskRecord) error {
	if j.cfg.URL == "" {
		return job.ErrSkipped
	}
	p := rec.GetOfflinePush()
	if p == nil {
		return job.Permanent(errors.New("offline push task without payload"))
	}
	body, err := json.Marshal(Payload{
		UID: p.Uid, Conv: p.ConvId, Seq: p.Seq, From: p.Sender,
		ContentType: p.ContentType, Preview: p.Preview, TS: p.CreatedAtMs,
	})
	if err != nil {
		return job.Permanent(fmt.Errorf("encode webhook body: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return job.Permanent(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gochat-task")
	req.Header.Set(HeaderIdempotencyKey, IdempotencyKey(p))
	if j.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(j.cfg.Secret, body))
	}

	start := time.Now()
	resp, err := j.client.Do(req)
	if err != nil {
		j.m.Webhook.WithLabelValues("error").Observe(time.Since(start).Seconds())
		return fmt.Errorf("webhook post: %w", err)
	}
	// Read (a bounded amount of) the body so the connection can be reused.
	var snippet bytes.Buffer
	_, _ = io.Copy(&snippet, io.LimitReader(resp.Body, maxErrBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	j.m.Webhook.WithLabelValues(statusClass(resp.StatusCode)).Observe(time.Since(start).Seconds())

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("webhook answered %d: %q", code, snippet.Bytes())
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return job.RetryAfter(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case code >= 400:
		return job.Permanent(err)
	default: // 1xx left over, 3xx: not a success, maybe transient
		return err
	}
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// retryAfter parses a Retry-After value (seconds or an HTTP date); 0 when
// absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		s = min(s, 24*3600) // the consumer caps it lower anyway; avoid overflow
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
