// Package webhook is the HTTP client the task service's jobs call their
// webhooks with (offline push, moderation): one signed JSON POST per
// attempt, with the answer classified for the consumer's retry policy.
//
// Deliveries are at least once (a task can be redone after a crash or a
// rebalance), so every request carries an Idempotency-Key the receiver can
// deduplicate on and, when a secret is configured, an HMAC-SHA256
// signature of the body (X-GoChat-Signature) so the receiver can trust it.
//
// A Client is safe for concurrent use; it shares one connection pool
// between all attempts.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/task/internal/job"
)

// Header names of the webhook contract.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = "X-GoChat-Signature"
)

// Config configures a Client.
type Config struct {
	// URL receives the POSTs; http:// or https:// with a host.
	URL string
	// Secret, when set, signs each body: X-GoChat-Signature is the hex
	// HMAC-SHA256 of the exact body bytes under Secret.
	Secret string
	// Timeout bounds one attempt, connection and answer included. Zero
	// means 5 s.
	Timeout time.Duration
	// MaxConns bounds idle keep-alive connections kept to the webhook host;
	// set it to the number of workers. Zero means 64.
	MaxConns int
	// Latency, when set, observes each call's duration by HTTP status class
	// ("2xx", "4xx", ...) or "error" when no answer came.
	Latency prometheus.ObserverVec
	// KeepAnswer makes Post return a 2xx answer's body, which must then be
	// read completely and be at most MaxAnswer bytes. Without it any 2xx
	// is success, whatever its body (read in part and dropped).
	KeepAnswer bool
}

// Client posts to one webhook.
type Client struct {
	cfg    Config
	client *http.Client
}

// maxErrBody is how much of an error answer is kept in the error message;
// MaxAnswer is the most of a successful answer Post returns; maxDrain is
// how much of an answer nobody reads is read and dropped, so the
// connection can serve the next call.
const (
	maxErrBody = 256
	MaxAnswer  = 64 << 10
	maxDrain   = 64 << 10
)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want http:// or https:// with a host", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
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
	return &Client{cfg: cfg, client: client}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.client.CloseIdleConnections() }

// Sign returns the hex HMAC-SHA256 of body under secret, the value of
// X-GoChat-Signature. Receivers compute the same over the raw body and
// compare with hmac.Equal.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Post makes one attempt: it POSTs the JSON body with the idempotency key.
// A 2xx status is success; with Config.KeepAnswer, Post returns the
// answer's body (a longer one than MaxAnswer is a permanent error, a body
// that cannot be read a retryable one). 408, 429, 5xx, any other status
// and transport errors are retryable (with the server's Retry-After as a
// hint); other 4xx are permanent (job.Permanent).
func (c *Client) Post(ctx context.Context, body []byte, idempotencyKey string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, job.Permanent(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gochat-task")
	req.Header.Set(HeaderIdempotencyKey, idempotencyKey)
	if c.cfg.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(c.cfg.Secret, body))
	}

	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		c.observe("error", start)
		return nil, fmt.Errorf("webhook post: %w", err)
	}
	code := resp.StatusCode
	defer func() {
		_ = resp.Body.Close()
		c.observe(statusClass(code), start)
	}()
	switch {
	case code >= 200 && code < 300 && !c.cfg.KeepAnswer:
		// Read (a bounded amount of) the body so the connection can be
		// reused; what it says does not matter.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil, nil
	case code >= 200 && code < 300:
		answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
		switch {
		case err != nil:
			return nil, fmt.Errorf("webhook answer: %w", err)
		case len(answer) > MaxAnswer:
			return nil, job.Permanent(fmt.Errorf("webhook answer over %d bytes", MaxAnswer))
		}
		return answer, nil
	}
	// Read (a bounded amount of) the body so the connection can be reused.
	var snippet bytes.Buffer
	_, _ = io.Copy(&snippet, io.LimitReader(resp.Body, maxErrBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	err = fmt.Errorf("webhook answered %d: %q", code, snippet.Bytes())
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return nil, job.RetryAfter(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case code >= 400:
		return nil, job.Permanent(err)
	default: // 1xx left over, 3xx: not a success, maybe transient
		return nil, err
	}
}

func (c *Client) observe(class string, start time.Time) {
	if c.cfg.Latency != nil {
		c.cfg.Latency.WithLabelValues(class).Observe(time.Since(start).Seconds())
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
