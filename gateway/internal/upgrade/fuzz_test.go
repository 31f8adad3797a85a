package upgrade

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/gochat-im/gochat/pkg/auth"
)

const fuzzLimit = 1024

type headResult struct {
	head string
	done bool
	err  error
	rest []byte // input left unread after the head
}

// feedHead feeds chunks to a Head through a netpoll LinkBuffer as
// OnRequest does. Until the head is complete, Feed must consume every
// readable byte.
func feedHead(t *testing.T, chunks [][]byte) headResult {
	t.Helper()
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	var h Head
	defer h.Reset()
	var r headResult
	for i, c := range chunks {
		if len(c) > 0 {
			_, _ = lb.WriteBinary(append([]byte(nil), c...))
			_ = lb.Flush()
		}
		var b []byte
		b, r.done, r.err = h.Feed(lb, fuzzLimit)
		if r.done || r.err != nil {
			r.head = string(b)
			for _, rest := range chunks[i+1:] {
				_, _ = lb.WriteBinary(append([]byte(nil), rest...))
			}
			_ = lb.Flush()
			r.rest, _ = lb.ReadBinary(lb.Len())
			return r
		}
		if lb.Len() != 0 {
			t.Fatalf("Feed left %d bytes unread before the head ended", lb.Len())
		}
		_ = lb.Release()
	}
	return r
}

// FuzzHandshake feeds arbitrary bytes to the request-head reader, whole
// and split at a fuzzed offset, then runs the handshake on any complete
// head: the head must be the same either way, end at the first empty line,
// leave what follows unread and respect the size limit; the handshake must
// never panic and must answer with an HTTP response, 101 only when it
// upgraded.
func FuzzHandshake(f *testing.F) {
	secret := []byte("fuzz-secret")
	v, err := auth.NewVerifier(secret)
	if err != nil {
		f.Fatal(err)
	}
	u, err := New(Config{Path: "/ws", Verifier: v, MaxHead: fuzzLimit})
	if err != nil {
		f.Fatal(err)
	}
	tok, err := auth.Sign(secret, auth.Claims{UID: "alice", Device: "phone", Expires: time.Now().Add(100 * 365 * 24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	std := "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	seeds := []string{
		"GET /ws?token=" + tok + " HTTP/1.1\r\n" + std + "\r\n",
		"GET /ws HTTP/1.1\r\n" + std + "Authorization: Bearer " + tok + "\r\n\r\n",
		"GET /ws?token=" + tok + " HTTP/1.1\r\n" + std + "\r\n\x81\x82abcdxy",
		"GET /ws?token=bogus HTTP/1.1\r\n" + std + "\r\n",
		"GET /chat?token=" + tok + " HTTP/1.1\r\n" + std + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 7\r\n\r\n",
		"POST /ws HTTP/1.1\r\n" + std + "\r\n",
		"GET /ws HTTP/1.0\r\n\r\n",
		"GET /ws HTTP/1.1\r\nX: " + string(bytes.Repeat([]byte("y"), 1100)) + "\r\n\r\n",
		"GET %zz HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n",
		"GET /ws HTTP/1.1\n\n",
	}
	for _, s := range seeds {
		for _, cut := range []uint16{0, 1, 3, uint16(len(s) / 2), uint16(len(s) - 1)} {
			f.Add([]byte(s), cut)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		whole := feedHead(t, [][]byte{data})
		k := int(cut) % (len(data) + 1)
		split := feedHead(t, [][]byte{data[:k], data[k:]})
		// After an error the connection is refused and the rest of its input
		// is discarded, so only the outcome has to agree.
		if whole.head != split.head || whole.done != split.done || !errors.Is(whole.err, split.err) ||
			whole.err == nil && !bytes.Equal(whole.rest, split.rest) {
			t.Fatalf("split at %d differs: %+v vs whole %+v", k, split, whole)
		}
		if !whole.done {
			return
		}
		end := bytes.Index(data, []byte("\r\n\r\n")) + 4
		if whole.head != string(data[:end]) || !bytes.Equal(whole.rest, data[end:]) || len(whole.head) > fuzzLimit {
			t.Fatalf("head %q (rest %q) does not end at the first empty line of %q", whole.head, whole.rest, data)
		}
		res := u.Handle([]byte(whole.head))
		if !bytes.HasPrefix(res.Response, []byte("HTTP/1.1 ")) {
			t.Fatalf("response %q", res.Response)
		}
		if res.OK != (res.Status == 101) || res.OK != bytes.HasPrefix(res.Response, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("ok %v status %d response %q", res.OK, res.Status, res.Response)
		}
		if res.OK && res.Claims.UID != "alice" {
			t.Fatalf("upgraded with claims %+v", res.Claims)
		}
	})
}
