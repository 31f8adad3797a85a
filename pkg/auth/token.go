// Package auth issues and verifies GoChat access tokens.
//
// A token is "v1.<payload>.<signature>", both parts unpadded base64url. The
// payload is "<uid>\n<device>\n<expiry unix seconds>"; the signature is
// HMAC-SHA256 of the payload bytes under the shared secret. Gateways verify
// tokens locally, so connecting costs no RPC. Rotating the secret: run
// gateways with the new secret first in Secrets and the old one after it,
// switch the issuer, then drop the old secret once old tokens have expired.
//
// Signer and Verifier are safe for concurrent use.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gochat-im/gochat/pkg/ids"
)

const prefix = "v1."

// Errors returned by Verify. Callers map any of them to HTTP 401.
var (
	ErrMalformed = errors.New("auth: malformed token")
	ErrSignature = errors.New("auth: bad token signature")
	ErrExpired   = errors.New("auth: token expired")
)

// Claims are what a token asserts.
type Claims struct {
	UID     string
	Device  string
	Expires time.Time
}

// Sign returns a token for c signed with secret.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: empty secret")
	}
	if !ids.ValidUID(c.UID) {
		return "", fmt.Errorf("auth: invalid uid %q", c.UID)
	}
	if !ids.ValidDevice(c.Device) {
		return "", fmt.Errorf("auth: invalid device %q", c.Device)
	}
	payload := c.UID + "\n" + c.Device + "\n" + strconv.FormatInt(c.Expires.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return prefix + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// Verifier checks tokens against one or more secrets (the first is current,
// the rest are accepted during rotation).
type Verifier struct {
	secrets [][]byte
	now     func() time.Time
}

// NewVerifier returns a Verifier for the given secrets.
func NewVerifier(secrets ...[]byte) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("auth: no secret")
	}
	for _, s := range secrets {
		if len(s) == 0 {
			return nil, errors.New("auth: empty secret")
		}
	}
	return &Verifier{secrets: secrets, now: time.Now}, nil
}

// SetClock replaces the clock, for tests.
func (v *Verifier) SetClock(now func() time.Time) { v.now = now }

// Verify checks the token's signature and expiry and returns its claims.
func (v *Verifier) Verify(token string) (Claims, error) {
	if !strings.HasPrefix(token, prefix) || len(token) > 1024 {
		return Claims{}, ErrMalformed
	}
	rest := token[len(prefix):]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return Claims{}, ErrMalformed
	}
	// Strict: a token has exactly one spelling. Without it the unused low
	// bits of each part's last character could be changed and the token
	// would still verify, so anything keyed by token text (a revocation
	// list, a cache, a log search) could be sidestepped.
	enc := base64.RawURLEncoding.Strict()
	payload, err := enc.DecodeString(rest[:dot])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	sig, err := enc.DecodeString(rest[dot+1:])
	if err != nil || len(sig) != sha256.Size {
		return Claims{}, ErrMalformed
	}
	ok := false
	for _, s := range v.secrets {
		mac := hmac.New(sha256.New, s)
		mac.Write(payload)
		if hmac.Equal(mac.Sum(nil), sig) {
			ok = true
			break
		}
	}
	if !ok {
		return Claims{}, ErrSignature
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 3 {
		return Claims{}, ErrMalformed
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	c := Claims{UID: parts[0], Device: parts[1], Expires: time.Unix(exp, 0)}
	if !ids.ValidUID(c.UID) || !ids.ValidDevice(c.Device) {
		return Claims{}, ErrMalformed
	}
	if !v.now().Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	return c, nil
}
