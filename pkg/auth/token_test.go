package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("s3cret")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, err := Sign(secret, Claims{UID: "alice", Device: "phone", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(secret)
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.UID != "alice" || c.Device != "phone" || !c.Expires.Equal(exp) {
		t.Fatalf("claims %+v", c)
	}
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestVerifyRejects(t *testing.T) {
	secret := []byte("s3cret")
	good, _ := Sign(secret, Claims{UID: "alice", Device: "web", Expires: time.Now().Add(time.Hour)})
	expired, _ := Sign(secret, Claims{UID: "alice", Device: "web", Expires: time.Now().Add(-time.Second)})
	other, _ := Sign([]byte("other"), Claims{UID: "alice", Device: "web", Expires: time.Now().Add(time.Hour)})
	// Flip one character of the payload: the signature no longer matches.
	body := []byte(good)
	body[5] ^= 1
	// A 32-byte signature is 43 characters whose last holds two unused bits;
	// setting one spells the same bytes differently.
	last := strings.IndexByte(alphabet, good[len(good)-1])
	loose := good[:len(good)-1] + string(alphabet[last|1])
	if last&1 != 0 {
		t.Fatalf("signature's last character %q has a low bit set", good[len(good)-1])
	}
	v, _ := NewVerifier(secret)
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"garbage", "hello", ErrMalformed},
		{"no sig", "v1.abc", ErrMalformed},
		{"bad base64", "v1.***.***", ErrMalformed},
		{"expired", expired, ErrExpired},
		{"other secret", other, ErrSignature},
		{"tampered", string(body), ErrSignature},
		{"loose signature bits", loose, ErrMalformed},
		{"too long", "v1." + strings.Repeat("a", 2000) + ".b", ErrMalformed},
	}
	for _, c := range cases {
		if _, err := v.Verify(c.tok); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestRotation(t *testing.T) {
	old, cur := []byte("old"), []byte("new")
	tok, _ := Sign(old, Claims{UID: "bob", Device: "d1", Expires: time.Now().Add(time.Hour)})
	v, _ := NewVerifier(cur, old)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("token under the previous secret rejected: %v", err)
	}
}

func TestSignRejectsBadClaims(t *testing.T) {
	if _, err := Sign([]byte("s"), Claims{UID: "a:b", Device: "d", Expires: time.Now()}); err == nil {
		t.Fatal("uid with ':' accepted")
	}
	if _, err := Sign(nil, Claims{UID: "a", Device: "d"}); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func BenchmarkVerify(b *testing.B) {
	secret := []byte("s3cret")
	tok, _ := Sign(secret, Claims{UID: "alice", Device: "phone", Expires: time.Now().Add(time.Hour)})
	v, _ := NewVerifier(secret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
