// Package upgrade performs the gateway's WebSocket opening handshake: it
// collects the HTTP request head from netpoll's buffer, checks the path and
// the access token, and produces the bytes to send back (101 Switching
// Protocols, or an HTTP error such as 401 before any upgrade).
//
// The handshake itself is gobwas/ws's Upgrader run over the complete,
// buffered request head with an in-memory reader and writer: it happens once
// per connection, so its few allocations do not matter, and it keeps RFC 6455
// header checks (version, key, Upgrade and Connection headers) in one
// well-tested place. The token is verified locally with HMAC (pkg/auth), no
// RPC.
//
// Concurrency: an Upgrader is immutable and safe for concurrent use; a Head
// belongs to one connection.
package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// DefaultMaxHead is the default limit on the request head size.
const DefaultMaxHead = 8 << 10

// Reasons a handshake ends, used as metric labels.
const (
	ReasonOK           = "ok"
	ReasonBadRequest   = "bad_request"
	ReasonBadVersion   = "bad_version"
	ReasonBadMethod    = "bad_method"
	ReasonNotFound     = "not_found"
	ReasonUnauthorized = "unauthorized"
	ReasonTooLarge     = "too_large"
	ReasonTimeout      = "timeout"
	ReasonShutdown     = "shutdown"
)

// Verifier checks access tokens; *auth.Verifier implements it.
type Verifier interface {
	Verify(token string) (auth.Claims, error)
}

// Config configures an Upgrader.
type Config struct {
	// Path is the only request path that upgrades, e.g. "/ws".
	Path string
	// MaxHead limits the request line plus headers; default DefaultMaxHead.
	MaxHead  int
	Verifier Verifier
}

// Upgrader answers handshakes.
type Upgrader struct {
	cfg Config
}

// New returns an Upgrader.
func New(cfg Config) (*Upgrader, error) {
	if cfg.Path == "" || cfg.Path[0] != '/' {
		return nil, fmt.Errorf("websocket path %q must start with /", cfg.Path)
	}
	if cfg.Verifier == nil {
		return nil, errors.New("upgrade: no token verifier")
	}
	if cfg.MaxHead <= 0 {
		cfg.MaxHead = DefaultMaxHead
	}
	return &Upgrader{cfg: cfg}, nil
}

// MaxHead is the request head limit in bytes.
func (u *Upgrader) MaxHead() int { return u.cfg.MaxHead }

// Result is the outcome of one handshake.
type Result struct {
	// OK means the connection is now a WebSocket; Claims hold the user.
	OK     bool
	Claims auth.Claims
	// Binary means the client chose the MessagePack encoding (subprotocol
	// protocol.SubprotocolMsgpack): frames both ways are binary frames of
	// MessagePack. Otherwise the connection speaks JSON in text frames.
	Binary bool
	// Status is the HTTP status sent (101 on success).
	Status int
	// Reason labels the outcome for metrics and logs (ReasonOK, ...).
	Reason string
	// Response is what to write to the client. On failure the connection
	// is closed after it is sent.
	Response []byte
}

type memRW struct {
	r *bytes.Reader
	w *bytes.Buffer
}

func (m memRW) Read(p []byte) (int, error)  { return m.r.Read(p) }
func (m memRW) Write(p []byte) (int, error) { return m.w.Write(p) }

// Handle runs the handshake on head, a complete request head ending with
// an empty line (as collected by Head).
func (u *Upgrader) Handle(head []byte) Result {
	var (
		token      string
		claims     auth.Claims
		authErr    error
		pathReject bool
	)
	if headerCount(head, "Sec-WebSocket-Key") > 1 {
		// RFC 6455 11.3.1: it must not appear more than once. gobwas/ws
		// reads it itself (OnHeader never sees it) and keeps the last.
		return Result{Status: http.StatusBadRequest, Reason: ReasonBadRequest,
			Response: ErrorResponse(http.StatusBadRequest, "more than one Sec-WebSocket-Key")}
	}
	up := ws.Upgrader{
		ProtocolCustom: selectProtocol,
		OnRequest: func(uri []byte) error {
			ru, err := url.ParseRequestURI(string(uri))
			if err != nil {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("bad request URI"))
			}
			if ru.Path != u.cfg.Path {
				pathReject = true
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("not found"))
			}
			token = ru.Query().Get("token")
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if token == "" && bytes.EqualFold(key, []byte("Authorization")) {
				if v, ok := cutPrefixFold(string(value), "Bearer "); ok {
					token = strings.TrimSpace(v)
				}
			}
			return nil
		},
		// Runs after the request passed every RFC 6455 check, so a bad
		// handshake gets its 400/426 even without a token.
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if token == "" {
				authErr = errors.New("missing token")
			} else {
				claims, authErr = u.cfg.Verifier.Verify(token)
			}
			if authErr != nil {
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusUnauthorized),
					ws.RejectionReason("unauthorized: "+authText(authErr)),
				)
			}
			return nil, nil
		},
	}
	var out bytes.Buffer
	hs, err := up.Upgrade(memRW{r: bytes.NewReader(head), w: &out})
	if err != nil {
		res := Result{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Response: out.Bytes()}
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && rej.StatusCode() != 0 {
			res.Status = rej.StatusCode()
		}
		switch {
		case authErr != nil:
			res.Reason = ReasonUnauthorized
		case pathReject:
			res.Reason = ReasonNotFound
		case err == ws.ErrHandshakeUpgradeRequired:
			res.Reason = ReasonBadVersion
		case err == ws.ErrHandshakeBadMethod:
			res.Reason = ReasonBadMethod
		}
		if len(res.Response) == 0 {
			// The upgrader wrote nothing (a read error on a malformed head).
			res.Response = ErrorResponse(http.StatusBadRequest, "bad request")
		}
		return res
	}
	return Result{OK: true, Claims: claims, Binary: hs.Protocol == protocol.SubprotocolMsgpack,
		Status: http.StatusSwitchingProtocols, Reason: ReasonOK, Response: out.Bytes()}
}

// selectProtocol picks the first of the subprotocols in one
// Sec-WebSocket-Protocol header that the gateway speaks; it is echoed in
// the 101. A client that names none of them (or no subprotocol at all)
// gets JSON and no Sec-WebSocket-Protocol header, as RFC 6455 4.2.2 asks.
// A header that is not a clean list of tokens is not a reason to refuse
// the connection (gobwas/ws's own parser would answer 400): names are
// split at commas and trimmed, and anything unknown is ignored.
func selectProtocol(v []byte) (string, bool) {
	for len(v) > 0 {
		var name []byte
		name, v, _ = bytes.Cut(v, []byte{','})
		switch string(bytes.TrimSpace(name)) {
		case protocol.SubprotocolMsgpack:
			return protocol.SubprotocolMsgpack, true
		case protocol.SubprotocolJSON:
			return protocol.SubprotocolJSON, true
		}
	}
	return "", true
}

func authText(err error) string {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return "token expired"
	case errors.Is(err, auth.ErrSignature), errors.Is(err, auth.ErrMalformed):
		return "bad token"
	}
	return err.Error()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// ErrorResponse builds a short plain-text HTTP error response that asks the
// client to close the connection.
func ErrorResponse(status int, body string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(status))
	b.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// headerCount counts the header lines of head named name (any case).
func headerCount(head []byte, name string) int {
	n := 0
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		k, _, ok := bytes.Cut(line, []byte{':'})
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			n++
		}
	}
	return n
}
