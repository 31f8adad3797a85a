// Package job defines what a task job is and the registry that maps each
// task kind to the job that handles it. Offline push is the only job today;
// moderation and archiving jobs plug in the same way: implement Handler and
// register it for a new events.TaskKind.
//
// A Handler runs one attempt of one task. The consumer decides about
// retries, dead-lettering and offsets from the error it returns:
//   - nil: done;
//   - ErrSkipped (wrapped or not): nothing to do, counted as skipped, done;
//   - an error marked with Permanent: retrying cannot help, dead-letter now;
//   - any other error: retry after a backoff, at least as long as a hint
//     given with RetryAfter, until the attempts run out.
//
// Handlers are called from many goroutines at once and must be safe for
// concurrent use. Delivery is at least once, so they must be idempotent (or
// pass an idempotency key on, as the offline push job does).
//
// A Registry is filled at start-up and only read afterwards; reads are safe
// for concurrent use once registration is over.
package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

// Handler runs one attempt of a task of the kind it is registered for.
type Handler interface {
	Handle(ctx context.Context, rec *events.TaskRecord) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, rec *events.TaskRecord) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, rec *events.TaskRecord) error { return f(ctx, rec) }

// ErrSkipped reports that the job had nothing to do (for example offline
// push with no webhook configured). The task is acknowledged.
var ErrSkipped = errors.New("job: skipped")

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying; a nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay a remote side asked for.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter attaches a minimum delay before the next attempt to err, for
// a remote side that said when to come back (HTTP Retry-After). The
// consumer still caps the delay at its configured maximum.
func RetryAfter(err error, d time.Duration) error {
	if err == nil || d <= 0 {
		return err
	}
	return retryAfterError{err: err, delay: d}
}

// RetryAfterHint returns the delay attached with RetryAfter, or 0.
func RetryAfterHint(err error) time.Duration {
	var r retryAfterError
	if errors.As(err, &r) {
		return r.delay
	}
	return 0
}

// Registry maps task kinds to handlers.
type Registry struct {
	handlers map[events.TaskKind]entry
}

type entry struct {
	name string
	h    Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{handlers: map[events.TaskKind]entry{}} }

// Register installs h for kind. Registering a kind twice is an error, so two
// jobs never silently compete for the same tasks.
func (r *Registry) Register(kind events.TaskKind, h Handler) error {
	if h == nil {
		return fmt.Errorf("job: nil handler for %v", kind)
	}
	if _, ok := r.handlers[kind]; ok {
		return fmt.Errorf("job: kind %v registered twice", kind)
	}
	r.handlers[kind] = entry{name: KindName(kind), h: h}
	return nil
}

// Lookup returns the handler of kind and the job name used in metrics and
// logs; ok is false for a kind nobody registered.
func (r *Registry) Lookup(kind events.TaskKind) (h Handler, name string, ok bool) {
	e, ok := r.handlers[kind]
	return e.h, e.name, ok
}

// Names lists the job names of the registered kinds, plus UnknownKind.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.handlers)+1)
	for _, e := range r.handlers {
		names = append(names, e.name)
	}
	return append(names, UnknownKind)
}

// UnknownKind is the metrics and log name of tasks with an unregistered kind
// or that could not be decoded, so a stream of bad records cannot create
// unbounded metric labels.
const UnknownKind = "unknown"

// KindName is the lower-case name of a known kind ("offline_push"), or
// UnknownKind.
func KindName(kind events.TaskKind) string {
	s := kind.String()
	if s == "<UNSET>" {
		return UnknownKind
	}
	return strings.ToLower(s)
}
