package upgrade

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/protocol"
)

var secret = []byte("test-secret")

const key = "dGhlIHNhbXBsZSBub25jZQ==" // the RFC 6455 example key

func newUpgrader(t testing.TB) *Upgrader {
	t.Helper()
	v, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(Config{Path: "/ws", Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func token(t testing.TB, uid string, exp time.Time) string {
	t.Helper()
	tok, err := auth.Sign(secret, auth.Claims{UID: uid, Device: "phone", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func request(target string, headers ...string) string {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: example.com\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func std(extra ...string) []string {
	return append([]string{
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + key,
		"Sec-WebSocket-Version: 13",
	}, extra...)
}

func parseResponse(t *testing.T, b []byte) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("bad response %q: %v", b, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestHandshakes(t *testing.T) {
	u := newUpgrader(t)
	good := token(t, "alice", time.Now().Add(time.Hour))
	expired := token(t, "alice", time.Now().Add(-time.Minute))
	forged, err := auth.Sign([]byte("not the secret"), auth.Claims{UID: "alice", Device: "phone", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// Change the signature's first character, whose six bits all count.
	// (Overwriting the last characters with fixed text, as this test once
	// did, left the token valid whenever it already ended that way.)
	sig := strings.LastIndexByte(good, '.') + 1
	swap := map[bool]string{true: "B", false: "A"}[good[sig] == 'A']
	tampered := good[:sig] + swap + good[sig+1:]
	cases := []struct {
		name   string
		req    string
		status int
		reason string
		body   string
	}{
		{"query-token", request("/ws?token="+good, std()...), 101, ReasonOK, ""},
		{"bearer-token", request("/ws", std("Authorization: Bearer "+good)...), 101, ReasonOK, ""},
		{"missing-token", request("/ws", std()...), 401, ReasonUnauthorized, "missing token"},
		{"bad-token", request("/ws?token=v1.abc.def", std()...), 401, ReasonUnauthorized, "bad token"},
		{"forged-token", request("/ws?token="+forged, std()...), 401, ReasonUnauthorized, "bad token"},
		{"tampered-token", request("/ws?token="+tampered, std()...), 401, ReasonUnauthorized, "bad token"},
		{"expired-token", request("/ws?token="+expired, std()...), 401, ReasonUnauthorized, "token expired"},
		{"wrong-path", request("/other?token="+good, std()...), 404, ReasonNotFound, ""},
		{"missing-key", request("/ws?token="+good, "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"), 400, ReasonBadRequest, ""},
		{"two-keys", request("/ws?token="+good, std("Sec-WebSocket-Key: "+key)...), 400, ReasonBadRequest, "more than one Sec-WebSocket-Key"},
		{"wrong-version", request("/ws?token="+good, "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 8"), 426, ReasonBadVersion, ""},
		{"not-upgrade", request("/ws?token="+good, "Connection: keep-alive"), 400, ReasonBadRequest, ""},
		{"bad-method", strings.Replace(request("/ws?token="+good, std()...), "GET", "POST", 1), 405, ReasonBadMethod, ""},
		// A bad handshake is reported as such even without a token.
		{"bad-handshake-no-token", request("/ws", "Upgrade: websocket"), 400, ReasonBadRequest, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Handle([]byte(tc.req))
			if res.Status != tc.status || res.Reason != tc.reason || res.OK != (tc.status == 101) {
				t.Fatalf("status %d reason %s ok %v, want %d %s; response %q", res.Status, res.Reason, res.OK, tc.status, tc.reason, res.Response)
			}
			resp, body := parseResponse(t, res.Response)
			if resp.StatusCode != tc.status {
				t.Fatalf("response status %d", resp.StatusCode)
			}
			if tc.body != "" && !strings.Contains(body, tc.body) {
				t.Fatalf("body %q does not mention %q", body, tc.body)
			}
			if res.OK {
				sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
					t.Fatalf("accept %q", got)
				}
				if res.Claims.UID != "alice" || res.Claims.Device != "phone" {
					t.Fatalf("claims %+v", res.Claims)
				}
			}
		})
	}
}

// The subprotocol is the first of the client's that the gateway speaks;
// a header that names none, or is not a clean token list, still upgrades
// (to JSON, without a Sec-WebSocket-Protocol header).
func TestSubprotocols(t *testing.T) {
	u := newUpgrader(t)
	good := token(t, "alice", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		headers []string
		chosen  string
	}{
		{[]string{"Sec-WebSocket-Protocol: gochat.msgpack"}, protocol.SubprotocolMsgpack},
		{[]string{"Sec-WebSocket-Protocol: x-other, gochat.msgpack, gochat.json"}, protocol.SubprotocolMsgpack},
		{[]string{"Sec-WebSocket-Protocol: gochat.json,gochat.msgpack"}, protocol.SubprotocolJSON},
		{[]string{"Sec-WebSocket-Protocol: x-other", "Sec-WebSocket-Protocol: gochat.msgpack"}, protocol.SubprotocolMsgpack},
		{[]string{"Sec-WebSocket-Protocol: a/b, gochat.msgpack"}, protocol.SubprotocolMsgpack},
		{[]string{"Sec-WebSocket-Protocol: x-other"}, ""},
		{[]string{"Sec-WebSocket-Protocol:"}, ""},
		{[]string{"Sec-WebSocket-Protocol: a;b"}, ""},
		{[]string{`Sec-WebSocket-Protocol: chat"x"`}, ""},
		{nil, ""},
	} {
		res := u.Handle([]byte(request("/ws?token="+good, std(tc.headers...)...)))
		if !res.OK {
			t.Fatalf("%q: status %d %q", tc.headers, res.Status, res.Response)
		}
		resp, _ := parseResponse(t, res.Response)
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.chosen || res.Binary != (tc.chosen == protocol.SubprotocolMsgpack) {
			t.Fatalf("%q: chosen %q binary %v, want %q", tc.headers, got, res.Binary, tc.chosen)
		}
	}
}

func TestNewValidates(t *testing.T) {
	v, _ := auth.NewVerifier(secret)
	if _, err := New(Config{Path: "ws", Verifier: v}); err == nil {
		t.Fatal("path without / accepted")
	}
	if _, err := New(Config{Path: "/ws"}); err == nil {
		t.Fatal("no verifier accepted")
	}
}

// feedChunks writes chunks into a netpoll buffer and feeds the Head after
// each, as OnRequest does.
func feedChunks(t *testing.T, chunks []string, max int) (done bool, head string, rest string, err error) {
	t.Helper()
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	h := &Head{}
	defer h.Reset()
	for _, c := range chunks {
		if c != "" {
			lb.WriteString(c)
			lb.Flush()
		}
		var b []byte
		b, done, err = h.Feed(lb, max)
		if done || err != nil {
			head = string(b)
			rest, _ = lb.ReadString(lb.Len())
			return done, head, rest, err
		}
		if lb.Len() != 0 {
			t.Fatalf("Feed left %d bytes", lb.Len())
		}
		lb.Release()
	}
	return false, "", "", nil
}

func TestHeadPartial(t *testing.T) {
	req := request("/ws?token=x", std()...)
	trailer := "\x81\x85tail" // a frame sent right behind the request
	for i := 0; i <= len(req); i++ {
		done, h, rest, err := feedChunks(t, []string{req[:i], req[i:] + trailer}, DefaultMaxHead)
		if err != nil || !done {
			t.Fatalf("split %d: done %v err %v", i, done, err)
		}
		if h != req {
			t.Fatalf("split %d: head %q", i, h)
		}
		want := trailer
		if i == len(req) {
			want = "" // the head ended with the first chunk; the frame came later
		}
		if rest != want {
			t.Fatalf("split %d: left %q in the buffer, want the trailer", i, rest)
		}
	}
	// Byte by byte.
	var chunks []string
	for i := range req {
		chunks = append(chunks, req[i:i+1])
	}
	if done, h, _, err := feedChunks(t, chunks, DefaultMaxHead); !done || err != nil || h != req {
		t.Fatalf("byte at a time: done %v err %v", done, err)
	}
	// Incomplete: not done, no error.
	if done, _, _, err := feedChunks(t, []string{req[:len(req)-1]}, DefaultMaxHead); done || err != nil {
		t.Fatalf("incomplete head: done %v err %v", done, err)
	}
}

func TestHeadTooLarge(t *testing.T) {
	big := request("/ws", std("Cookie: "+strings.Repeat("x", 9000))...)
	if _, _, _, err := feedChunks(t, []string{big}, DefaultMaxHead); err != ErrHeadTooLarge {
		t.Fatalf("err %v, want ErrHeadTooLarge", err)
	}
	// In small pieces too, and with no end in sight.
	var chunks []string
	for i := 0; i < 100; i++ {
		chunks = append(chunks, strings.Repeat("y", 100))
	}
	if _, _, _, err := feedChunks(t, chunks, DefaultMaxHead); err != ErrHeadTooLarge {
		t.Fatalf("err %v, want ErrHeadTooLarge", err)
	}
	// Just under the limit is fine.
	ok := request("/ws", std("Cookie: "+strings.Repeat("x", 7800))...)
	if len(ok) > DefaultMaxHead {
		t.Fatalf("test request is %d bytes", len(ok))
	}
	if done, _, _, err := feedChunks(t, []string{ok}, DefaultMaxHead); !done || err != nil {
		t.Fatalf("done %v err %v", done, err)
	}
	resp, _ := parseResponse(t, ErrorResponse(http.StatusRequestHeaderFieldsTooLarge, "too large"))
	if resp.StatusCode != 431 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
