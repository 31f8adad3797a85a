package job

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	called := false
	h := HandlerFunc(func(context.Context, *events.TaskRecord) error { called = true; return nil })
	if err := r.Register(events.TaskKind_OFFLINE_PUSH, h); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(events.TaskKind_OFFLINE_PUSH, h); err == nil {
		t.Fatal("second registration of a kind succeeded")
	}
	if err := r.Register(events.TaskKind(42), nil); err == nil {
		t.Fatal("nil handler accepted")
	}
	got, name, ok := r.Lookup(events.TaskKind_OFFLINE_PUSH)
	if !ok || name != "offline_push" {
		t.Fatalf("lookup: ok=%v name=%q", ok, name)
	}
	if err := got.Handle(context.Background(), nil); err != nil || !called {
		t.Fatalf("handler not the registered one: %v %v", err, called)
	}
	if _, _, ok := r.Lookup(events.TaskKind(42)); ok {
		t.Fatal("unknown kind found")
	}
	if names := r.Names(); len(names) != 2 || names[0] != "offline_push" || names[1] != UnknownKind {
		t.Fatalf("names %v", names)
	}
	if KindName(events.TaskKind(42)) != UnknownKind {
		t.Fatal("unknown kind has a name")
	}
}

func TestErrorMarks(t *testing.T) {
	base := errors.New("boom")
	if Permanent(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Fatal("marking nil must stay nil")
	}
	p := fmt.Errorf("attempt: %w", Permanent(base))
	if !IsPermanent(p) || !errors.Is(p, base) || p.Error() != "attempt: boom" {
		t.Fatalf("permanent mark lost: %v", p)
	}
	if IsPermanent(base) {
		t.Fatal("plain error reported permanent")
	}
	ra := fmt.Errorf("x: %w", RetryAfter(base, 3*time.Second))
	if RetryAfterHint(ra) != 3*time.Second || !errors.Is(ra, base) || IsPermanent(ra) {
		t.Fatalf("retry-after mark: %v", ra)
	}
	if RetryAfter(base, 0) != base || RetryAfterHint(base) != 0 {
		t.Fatal("zero hint must not wrap")
	}
	if !errors.Is(fmt.Errorf("w: %w", ErrSkipped), ErrSkipped) {
		t.Fatal("skipped not detectable")
	}
}
