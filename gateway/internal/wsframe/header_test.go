package wsframe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// headerCases cover every length encoding, masked and unmasked; the
// benchmarks reuse them.
var headerCases = []struct {
	name string
	h    ws.Header
}{
	{"empty", ws.Header{Fin: true, OpCode: ws.OpText}},
	{"len7", ws.Header{Fin: true, OpCode: ws.OpText, Length: 125}},
	{"len7-masked", ws.Header{Fin: true, OpCode: ws.OpText, Length: 100, Masked: true, Mask: [4]byte{1, 2, 3, 4}}},
	{"len16-min", ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 126}},
	{"len16-max-masked", ws.Header{Fin: true, OpCode: ws.OpText, Length: 65535, Masked: true, Mask: [4]byte{9, 8, 7, 6}}},
	{"len64-min", ws.Header{Fin: false, OpCode: ws.OpContinuation, Length: 65536}},
	{"len64-big-masked", ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 40, Masked: true, Mask: [4]byte{0xff, 0, 0xff, 0}}},
	{"ping-masked", ws.Header{Fin: true, OpCode: ws.OpPing, Length: 4, Masked: true, Mask: [4]byte{1, 1, 1, 1}}},
	{"rsv", ws.Header{Fin: true, Rsv: 0x4, OpCode: ws.OpText, Length: 3}},
}

func encodeHeader(t testing.TB, h ws.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ws.WriteHeader(&buf, h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseHeader(t *testing.T) {
	for _, tc := range headerCases {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeHeader(t, tc.h)
			got, n, err := ParseHeader(append(b, 0xAA, 0xBB)) // trailing payload bytes are ignored
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b) || n != ws.HeaderSize(tc.h) {
				t.Fatalf("size %d, want %d", n, len(b))
			}
			if got != tc.h {
				t.Fatalf("got %+v, want %+v", got, tc.h)
			}
			// Every proper prefix is reported as short, with the size needed.
			for i := 0; i < len(b); i++ {
				_, need, err := ParseHeader(b[:i])
				if !errors.Is(err, ErrShort) {
					t.Fatalf("prefix %d: err %v, want ErrShort", i, err)
				}
				if i >= 2 && need != len(b) {
					t.Fatalf("prefix %d: need %d, want %d", i, need, len(b))
				}
			}
		})
	}
}

func TestParseHeaderRejectsHugeLength(t *testing.T) {
	b := []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}
	if _, _, err := ParseHeader(b); err != ErrBadLength {
		t.Fatalf("err %v, want ErrBadLength", err)
	}
}

func TestCheck(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	cases := []struct {
		name string
		h    ws.Header
		want error
	}{
		{"ok", ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 10}, nil},
		{"at-cap", ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 100}, nil},
		{"unmasked", ws.Header{Fin: true, OpCode: ws.OpText, Length: 10}, ErrUnmasked},
		{"oversize", ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 101}, ErrTooBig},
		{"rsv", ws.Header{Fin: true, Rsv: 1, OpCode: ws.OpText, Masked: true}, ErrReservedBits},
		{"reserved-op", ws.Header{Fin: true, OpCode: 0x3, Masked: true}, ErrReservedOp},
		{"control-long", ws.Header{Fin: true, OpCode: ws.OpPing, Masked: true, Length: 126}, ErrControlSize},
		{"control-frag", ws.Header{Fin: false, OpCode: ws.OpPong, Masked: true}, ErrControlFrag},
	}
	for _, tc := range cases {
		if got := Check(tc.h, 100); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if ErrTooBig.Code != ws.StatusMessageTooBig || ErrUnmasked.Code != ws.StatusProtocolError {
		t.Fatal("close codes changed")
	}
}

func TestPutHeaderRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		payload := bytes.Repeat([]byte{'x'}, n)
		f := Frame(ws.OpText, payload)
		if len(f) != ServerHeaderLen(n)+n {
			t.Fatalf("n=%d: frame length %d", n, len(f))
		}
		h, err := ws.ReadHeader(bytes.NewReader(f))
		if err != nil {
			t.Fatal(err)
		}
		if !h.Fin || h.Masked || h.OpCode != ws.OpText || h.Length != int64(n) {
			t.Fatalf("n=%d: header %+v", n, h)
		}
	}
}

func TestCloseFrame(t *testing.T) {
	f := CloseFrame(ws.StatusMessageTooBig, "too big")
	h, n, err := ParseHeader(f)
	if err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("header %+v err %v", h, err)
	}
	code, err := ParseClose(f[n:])
	if err != nil || code != ws.StatusMessageTooBig {
		t.Fatalf("code %d err %v", code, err)
	}
	long := CloseFrame(ws.StatusGoingAway, string(bytes.Repeat([]byte("é"), 100)))
	if len(long) > 2+MaxControlPayload {
		t.Fatalf("close frame of %d bytes exceeds the control limit", len(long))
	}
	if _, err := ParseClose(long[2:]); err != nil {
		t.Fatalf("cut reason is not valid: %v", err)
	}
	if empty := CloseFrame(0, ""); len(empty) != 2 {
		t.Fatalf("empty close frame is %d bytes", len(empty))
	}
}

func TestParseClose(t *testing.T) {
	cases := []struct {
		p    []byte
		code ws.StatusCode
		err  error
	}{
		{nil, 0, nil},
		{[]byte{3}, 0, ErrBadClose},
		{[]byte{0x03, 0xe8}, 1000, nil},
		{[]byte{0x03, 0xe8, 'o', 'k'}, 1000, nil},
		{[]byte{0x03, 0xed}, 1005, ErrBadClose}, // reserved, never on the wire
		{[]byte{0x00, 0x10}, 16, ErrBadClose},   // below 1000
		{[]byte{0x0f, 0xa0}, 4000, nil},         // private use
		{[]byte{0x13, 0x87}, 4999, nil},         // the last private-use code
		{[]byte{0x13, 0x88}, 5000, ErrBadClose}, // beyond every range
		{[]byte{0xff, 0xff}, 65535, ErrBadClose},
		{[]byte{0x03, 0xf4}, 1012, nil},         // service restart (IANA)
		{[]byte{0x03, 0xf6}, 1014, nil},         // bad gateway (IANA)
		{[]byte{0x03, 0xf7}, 1015, ErrBadClose}, // TLS failure: reserved
		{[]byte{0x03, 0xec}, 1004, ErrBadClose}, // reserved
		{[]byte{0x07, 0xd0}, 2000, ErrBadClose}, // unassigned
		{[]byte{0x0b, 0xb8}, 3000, nil},         // registered by libraries
		{[]byte{0x03, 0xe8, 0xff}, 1000, ErrInvalidUTF8},
	}
	for _, tc := range cases {
		code, err := ParseClose(tc.p)
		if code != tc.code || err != tc.err {
			t.Errorf("%x: got %d %v, want %d %v", tc.p, code, err, tc.code, tc.err)
		}
	}
}

// A frame built in a FrameBuffer equals Frame's, for every header length.
func TestFrameBuffer(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		got := FinishFrame(append(FrameBuffer(16), payload...), ws.OpText)
		if want := Frame(ws.OpText, payload); !bytes.Equal(got, want) {
			t.Fatalf("%d-byte payload: header % x, want % x", n, got[:min(len(got), 10)], want[:min(len(want), 10)])
		}
	}
}
