package session

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

func TestIdentity(t *testing.T) {
	s := New(&Env{Now: func() int64 { return 1 }}, nil, 7)
	if s.UID() != "" || s.Device() != "" || s.State() != StateHandshake {
		t.Fatalf("fresh session: %q %q %v", s.UID(), s.Device(), s.State())
	}
	s.Upgraded("alice", "phone-1")
	if s.UID() != "alice" || s.Device() != "phone-1" || s.State() != StateRegistering || s.ConnID() != 7 {
		t.Fatalf("after upgrade: %q %q %v", s.UID(), s.Device(), s.State())
	}
	if got, ok := FromContext(s); !ok || got != s {
		t.Fatal("a session is its own context")
	}
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("background context taken for a session")
	}
	if !s.ClaimDisconnect() || s.ClaimDisconnect() {
		t.Fatal("ClaimDisconnect must succeed exactly once")
	}
	s.MarkRegistered()
	if !s.Registered() {
		t.Fatal("not registered")
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0).UnixNano()
	s := New(&Env{Now: func() int64 { return now }}, nil, 1)
	for i := 0; i < 5; i++ {
		if !s.Allow(5) {
			t.Fatalf("message %d refused", i)
		}
	}
	if s.Allow(5) {
		t.Fatal("sixth message in one second allowed")
	}
	now += int64(time.Second)
	if !s.Allow(5) {
		t.Fatal("new second still limited")
	}
	for i := 0; i < 100; i++ {
		if !s.Allow(0) || !s.Allow(-1) {
			t.Fatal("no limit refused")
		}
	}
}

// The session is allocated once per connection: keep it in the 192-byte
// size class (see the Session comment).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 192 {
		t.Fatalf("Session is %d bytes; keep it at most 192", n)
	}
}
