// Package offlinepush is the job that tells an application backend, through
// an HTTP webhook, that a user who is offline has a new message, so the
// backend can send a mobile push notification.
//
// Each attempt is one POST of a small JSON document through package
// webhook (idempotency key, signature, retry classification).
//
// A Job is safe for concurrent use.
package offlinepush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/webhook"
)

// Header names of the webhook contract.
const (
	HeaderIdempotencyKey = webhook.HeaderIdempotencyKey
	HeaderSignature      = webhook.HeaderSignature
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
	hook *webhook.Client // nil without a URL
}

var _ job.Handler = (*Job)(nil)

// New checks cfg and returns the job.
func New(cfg Config, m *metrics.Metrics) (*Job, error) {
	if m == nil {
		return nil, errors.New("offlinepush: nil metrics")
	}
	if cfg.URL == "" {
		return &Job{}, nil
	}
	hook, err := webhook.New(webhook.Config{URL: cfg.URL, Secret: cfg.Secret, Timeout: cfg.Timeout, MaxConns: cfg.MaxConns,
		Latency: m.Webhook.MustCurryWith(prometheus.Labels{"job": job.KindName(events.TaskKind_OFFLINE_PUSH)})})
	if err != nil {
		return nil, err
	}
	return &Job{hook: hook}, nil
}

// Close releases idle connections.
func (j *Job) Close() {
	if j.hook != nil {
		j.hook.Close()
	}
}

// IdempotencyKey is the key of one notification: "<conv>:<seq>:<uid>".
// Every attempt and every redelivery of the same task carries the same key.
func IdempotencyKey(p *events.OfflinePush) string {
	return p.ConvId + ":" + strconv.FormatInt(p.Seq, 10) + ":" + p.Uid
}

// Sign returns the value of X-GoChat-Signature for body (see webhook.Sign).
func Sign(secret string, body []byte) string { return webhook.Sign(secret, body) }

// Handle makes one delivery attempt. 2xx is success; 408, 429, 5xx, any
// other status and transport errors are retryable (with the server's
// Retry-After as a hint); other 4xx are permanent.
func (j *Job) Handle(ctx context.Context, rec *events.TaskRecord) error {
	if j.hook == nil {
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
	_, err = j.hook.Post(ctx, body, IdempotencyKey(p))
	return err
}
