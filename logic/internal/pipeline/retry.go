package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/gochat-im/gochat/pkg/errcode"
)

// permanentError is a failure retrying cannot fix (a business error that
// is not Unavailable).
type permanentError struct {
	code errcode.Code
	msg  string
}

func (e *permanentError) Error() string { return e.code.String() + ": " + e.msg }

// retry runs op until it succeeds, fails permanently, or ctx ends. Transient
// failures (a dependency down or timing out) are retried with backoff from
// 20 ms to 2 s for as long as it takes: a partition waits rather than skip a
// record, which would break the conversation's order.
func retry(ctx context.Context, log *slog.Logger, what string, op func() error) error {
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if code, msg := errcode.Of(err); !code.Retryable() {
			return &permanentError{code: code, msg: msg}
		}
		if attempt == 1 || attempt%20 == 0 {
			log.Warn("retrying", "op", what, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}
