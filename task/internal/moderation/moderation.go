// Package moderation is the task service's content moderation job. Logic,
// run with -moderate, emits every message sent as a MODERATE task; this job
// judges it and, when the verdict is to take it down, has logic recall it
// (logic's Recall RPC, on the operator's behalf). The recall leaves an
// event in the conversation, pushed to every device and synced like any
// message, whose body is the reason, and the message is served recalled
// (without its body) from then on.
//
// Moderation is after the fact: messages are delivered at once and taken
// back when judged, which keeps the judge (often a remote classifier) off
// the message path. Two judges can be configured, used in this order:
//   - a word list: a message whose body contains one of the words (any
//     case) is recalled without asking further;
//   - a webhook: one POST per message (Request), answered with an Answer.
//
// Deliveries are at least once, and so is judging: the same message's task
// can come again after a crash, a rebalance, logic replaying a batch or a
// client retransmitting the message. A job remembers the messages it judged
// lately and skips those; beyond that, the webhook gets an Idempotency-Key
// of "<conv>:<seq>", and a second recall of the same message is answered as
// a duplicate by logic.
//
// A Job is safe for concurrent use.
package moderation

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/webhook"
)

// Recaller is the part of logic's API the job calls.
type Recaller interface {
	Recall(ctx context.Context, req *logic.RecallReq) (*logic.RecallResp, error)
}

// Config configures the job. Without a URL and without Words the job
// judges nothing: tasks are counted as skipped and acknowledged.
type Config struct {
	// URL is the moderation webhook; Secret signs its bodies
	// (X-GoChat-Signature); Timeout bounds one call (0: 5 s); MaxConns
	// bounds idle connections to it (0: 64).
	URL      string
	Secret   string
	Timeout  time.Duration
	MaxConns int
	// Words are blocked words or phrases (see LoadWords).
	Words []string
	// Logic and RecallSecret (logic's -recall-secret, or its admin
	// secret) recall what is rejected.
	Logic        Recaller
	RecallSecret string
}

// Request is the JSON body POSTed to the moderation webhook.
type Request struct {
	Conv        string `json:"conv"`         // conversation id
	Seq         int64  `json:"seq"`          // the message's sequence number in conv
	From        string `json:"from"`         // the sender's uid
	To          string `json:"to,omitempty"` // the recipient of a one-to-one message
	CMID        string `json:"cmid"`         // the sender's client message id
	ContentType string `json:"content_type"` // the message's content type
	Body        string `json:"body"`         // the message as sent
	TS          int64  `json:"ts"`           // creation time, Unix milliseconds
}

// Answer is the moderation webhook's 2xx answer: {"action":"allow"}, or
// {"action":"recall","reason":"..."} to take the message back, the reason
// being shown to clients ("removed by moderation" when empty; cut to 256
// bytes). An empty body means allow.
type Answer struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Actions of an Answer.
const (
	ActionAllow  = "allow"
	ActionRecall = "recall"
)

// Reasons the job gives when the judge gave none.
const (
	DefaultReason = "removed by moderation"
	WordReason    = "removed by moderation: blocked words"
)

// Verdict label values of metrics.Verdicts.
const (
	verdictAllowed         = "allowed"
	verdictRecalled        = "recalled"
	verdictAlreadyRecalled = "already_recalled"
	verdictDuplicate       = "duplicate"
)

// recallWait is how long logic is asked to wait for a recall to be stored.
const recallWait = 8 * time.Second

// Job is the moderation job.
type Job struct {
	cfg   Config
	words []string
	hook  *webhook.Client // nil without a URL
	m     *metrics.Metrics
	seen  *recent // messages judged lately
}

var _ job.Handler = (*Job)(nil)

// New checks cfg and returns the job.
func New(cfg Config, m *metrics.Metrics) (*Job, error) {
	if m == nil {
		return nil, errors.New("moderation: nil metrics")
	}
	j := &Job{cfg: cfg, m: m, seen: newRecent(recentCap)}
	for _, w := range cfg.Words {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			j.words = append(j.words, w)
		}
	}
	if cfg.URL != "" {
		hook, err := webhook.New(webhook.Config{URL: cfg.URL, Secret: cfg.Secret, Timeout: cfg.Timeout, MaxConns: cfg.MaxConns, KeepAnswer: true,
			Latency: m.Webhook.MustCurryWith(prometheus.Labels{"job": job.KindName(events.TaskKind_MODERATE)})})
		if err != nil {
			return nil, fmt.Errorf("moderation: %w", err)
		}
		j.hook = hook
	}
	if j.Enabled() && (cfg.Logic == nil || cfg.RecallSecret == "") {
		return nil, errors.New("moderation: recalling needs logic's recall secret (-recall-secret)")
	}
	for _, v := range []string{verdictAllowed, verdictRecalled, verdictAlreadyRecalled, verdictDuplicate} {
		m.Verdicts.WithLabelValues(v)
	}
	return j, nil
}

// Enabled reports whether the job judges anything.
func (j *Job) Enabled() bool { return j.hook != nil || len(j.words) > 0 }

// Close releases idle connections.
func (j *Job) Close() {
	if j.hook != nil {
		j.hook.Close()
	}
}

// LoadWords reads a word list: one word or phrase per line, blank lines and
// lines starting with # ignored.
func LoadWords(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("moderation words: %w", err)
	}
	defer f.Close()
	var words []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("moderation words: %s line %d is not UTF-8", path, n)
		}
		words = append(words, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("moderation words: %s: %w", path, err)
	}
	return words, nil
}

// Handle judges one message and has it recalled if the verdict says so.
// Judge failures are retried like any task's (a permanent one, such as an
// answer that is not an Answer, goes to the dead-letter topic); so are
// logic's retryable errors. A message whose conversation is gone is
// skipped.
func (j *Job) Handle(ctx context.Context, rec *events.TaskRecord) error {
	if !j.Enabled() {
		return job.ErrSkipped
	}
	msg := rec.GetModerate()
	if msg == nil {
		return job.Permanent(errors.New("moderation task without a message"))
	}
	if msg.Recalled || msg.ContentType == protocol.ContentTypeRecall {
		return job.ErrSkipped
	}
	// The message's key: in j.seen, and the webhook's Idempotency-Key.
	key := msg.ConvId + ":" + strconv.FormatInt(msg.Seq, 10)
	if j.seen.has(key) {
		return fmt.Errorf("%s judged already: %w", key, job.ErrSkipped)
	}
	if err := j.judge(ctx, msg, key); err != nil {
		return err
	}
	j.seen.add(key)
	return nil
}

// judge judges msg, whose key is key, and has it recalled if the verdict
// says so.
func (j *Job) judge(ctx context.Context, msg *common.Message, key string) error {
	reason, recall := j.matchWords(msg.Body)
	if !recall && j.hook != nil {
		var err error
		if reason, recall, err = j.ask(ctx, msg, key); err != nil {
			return err
		}
	}
	if !recall {
		j.m.Verdicts.WithLabelValues(verdictAllowed).Inc()
		return nil
	}
	resp, err := j.cfg.Logic.Recall(ctx, &logic.RecallReq{AdminSecret: j.cfg.RecallSecret, ConvId: msg.ConvId, Seq: msg.Seq,
		Reason: reason, WaitMs: int32(recallWait / time.Millisecond)})
	if err != nil {
		code, text := errcode.Of(err)
		switch {
		case code.Retryable():
			return fmt.Errorf("recall %s/%d: %w", msg.ConvId, msg.Seq, err)
		case code == errcode.Unauthorized:
			// The secret is wrong here or there, or being rotated: retried,
			// as the message is no less to be taken down.
			return fmt.Errorf("recall %s/%d refused, check -recall-secret against logic's: %w", msg.ConvId, msg.Seq, err)
		case code == errcode.ConvNotFound:
			return fmt.Errorf("recall %s/%d: %s: %w", msg.ConvId, msg.Seq, text, job.ErrSkipped)
		default:
			return job.Permanent(fmt.Errorf("recall %s/%d: %w", msg.ConvId, msg.Seq, err))
		}
	}
	switch {
	case resp.AlreadyRecalled:
		j.m.Verdicts.WithLabelValues(verdictAlreadyRecalled).Inc()
	case resp.Duplicate:
		// Judged again (a redelivered task) after an earlier recall.
		j.m.Verdicts.WithLabelValues(verdictDuplicate).Inc()
	default:
		j.m.Verdicts.WithLabelValues(verdictRecalled).Inc()
	}
	return nil
}

// ErrUnauthorized is returned by CheckAccess when logic refuses the recall
// secret.
var ErrUnauthorized = errors.New("moderation: logic refuses the recall secret")

// CheckAccess asks logic whether it takes the recall secret, with a Recall
// call that names no message: ErrUnauthorized when it does not, nil when it
// does or the job judges nothing, and the call's error when logic could
// not be asked.
func (j *Job) CheckAccess(ctx context.Context) error {
	if !j.Enabled() {
		return nil
	}
	_, err := j.cfg.Logic.Recall(ctx, &logic.RecallReq{AdminSecret: j.cfg.RecallSecret})
	switch code, _ := errcode.Of(err); {
	case code == errcode.Unauthorized:
		return ErrUnauthorized
	case code.Retryable():
		return err
	}
	return nil
}

// matchWords reports whether body contains a blocked word, in any case.
func (j *Job) matchWords(body string) (string, bool) {
	if len(j.words) == 0 {
		return "", false
	}
	lower := strings.ToLower(body)
	for _, w := range j.words {
		if strings.Contains(lower, w) {
			return WordReason, true
		}
	}
	return "", false
}

// ask posts msg to the webhook, with key as its Idempotency-Key, and reads
// its Answer.
func (j *Job) ask(ctx context.Context, msg *common.Message, key string) (string, bool, error) {
	body, err := json.Marshal(Request{Conv: msg.ConvId, Seq: msg.Seq, From: msg.Sender, To: msg.Recipient, CMID: msg.ClientMsgId,
		ContentType: msg.ContentType, Body: msg.Body, TS: msg.CreatedAtMs})
	if err != nil {
		return "", false, job.Permanent(fmt.Errorf("encode moderation request: %w", err))
	}
	raw, err := j.hook.Post(ctx, body, key)
	if err != nil {
		return "", false, err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return "", false, nil
	}
	var a Answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return "", false, job.Permanent(fmt.Errorf("moderation webhook answered %q, not a JSON answer: %w", clip(raw), err))
	}
	switch a.Action {
	case ActionAllow:
		return "", false, nil
	case ActionRecall:
		// (encoding/json has made the reason valid UTF-8.) A reason too
		// long is cut rather than refused: the verdict stands.
		return cutReason(a.Reason), true, nil
	default:
		return "", false, job.Permanent(fmt.Errorf("moderation webhook answered action %q; want %q or %q", clip([]byte(a.Action)), ActionAllow, ActionRecall))
	}
}

// cutReason returns reason, DefaultReason when it is empty, cut to
// protocol.MaxRecallReason bytes at a character boundary.
func cutReason(reason string) string {
	if reason == "" {
		return DefaultReason
	}
	return protocol.CutUTF8(reason, protocol.MaxRecallReason)
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
