package errcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	err := Biz(UserNotFound, "no user %q", "zed")
	c, msg := Of(err)
	if c != UserNotFound || msg != `no user "zed"` {
		t.Fatalf("Of = %v %q", c, msg)
	}
	wrapped := fmt.Errorf("ctx: %w", New(TooLarge, "body"))
	if c, _ := Of(ToBiz(wrapped)); c != TooLarge {
		t.Fatalf("ToBiz lost the code: %v", c)
	}
	if c, _ := Of(ToBiz(errors.New("boom"))); c != Internal {
		t.Fatalf("plain error → %v", c)
	}
	if c, _ := Of(errors.New("dial tcp: refused")); c != Unavailable {
		t.Fatalf("transport error → %v", c)
	}
	if !Unavailable.Retryable() || BadJSON.Retryable() {
		t.Fatal("Retryable")
	}
	if UserNotFound.String() != "user_not_found" {
		t.Fatal(UserNotFound.String())
	}
}
