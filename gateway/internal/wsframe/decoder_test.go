package wsframe

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
)

// clientFrame encodes a masked frame as a client sends it.
func clientFrame(t testing.TB, op ws.OpCode, fin bool, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f = ws.MaskFrameWith(f, [4]byte{0x37, 0xfa, 0x21, 0x3d})
	if err := ws.WriteFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type frame struct {
	op      ws.OpCode
	fin     bool
	payload []byte
}

// feed writes chunks into a netpoll LinkBuffer one at a time and decodes
// after each, as OnRequest does, copying payloads out before Release.
func feed(t testing.TB, chunks [][]byte, max int64) ([]frame, error) {
	t.Helper()
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	var d Decoder
	defer d.Reset()
	var out []frame
	for _, c := range chunks {
		if len(c) > 0 {
			// Chunks over 4 KiB are linked, not copied, by WriteBinary, and
			// the decoder unmasks in place: hand it a private copy.
			if _, err := lb.WriteBinary(append([]byte(nil), c...)); err != nil {
				t.Fatal(err)
			}
			if err := lb.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		for {
			h, p, err := d.Next(lb, max)
			if errors.Is(err, ErrMore) {
				break
			}
			if err != nil {
				return out, err
			}
			out = append(out, frame{h.OpCode, h.Fin, append([]byte{}, p...)})
		}
		if lb.Len() != 0 {
			t.Fatalf("decoder left %d bytes unread", lb.Len())
		}
		if err := lb.Release(); err != nil {
			t.Fatal(err)
		}
	}
	return out, nil
}

func TestDecoderSplitAtEveryOffset(t *testing.T) {
	small := []frame{
		{ws.OpText, true, []byte(`{"type":"ping"}`)},
		{ws.OpPing, true, nil},
		{ws.OpText, true, bytes.Repeat([]byte("a"), 125)},  // longest 7-bit length
		{ws.OpText, false, bytes.Repeat([]byte("b"), 126)}, // shortest 16-bit length
		{ws.OpContinuation, true, bytes.Repeat([]byte("c"), 300)},
		{ws.OpClose, true, []byte{0x03, 0xe8}},
	}
	big := []frame{
		{ws.OpText, true, []byte("x")},
		{ws.OpBinary, true, bytes.Repeat([]byte{0, 1, 2, 3}, 16500)}, // 64-bit length
		{ws.OpText, true, []byte("y")},
	}
	run := func(t *testing.T, want []frame, offsets []int) {
		var stream []byte
		for _, f := range want {
			stream = append(stream, clientFrame(t, f.op, f.fin, f.payload)...)
		}
		check := func(got []frame, split string) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("split %s: got %d frames, want %d", split, len(got), len(want))
			}
			for i := range want {
				if got[i].op != want[i].op || got[i].fin != want[i].fin || !bytes.Equal(got[i].payload, want[i].payload) {
					t.Fatalf("split %s: frame %d: got op %d fin %v len %d", split, i, got[i].op, got[i].fin, len(got[i].payload))
				}
			}
		}
		if offsets == nil {
			for i := 0; i <= len(stream); i++ {
				offsets = append(offsets, i)
			}
		}
		for k, i := range offsets {
			if i < 0 { // counted from the end
				i += len(stream) + 1
				offsets[k] = i
			}
			got, err := feed(t, [][]byte{stream[:i], stream[i:]}, 1<<20)
			if err != nil {
				t.Fatalf("split at %d: %v", i, err)
			}
			check(got, fmt.Sprint(i))
		}
		// Three pieces: the second cut a few bytes after the first.
		for _, i := range offsets {
			for _, d := range []int{1, 2, 3, 7, 13} {
				j := min(i+d, len(stream))
				got, err := feed(t, [][]byte{stream[:i], stream[i:j], stream[j:]}, 1<<20)
				if err != nil {
					t.Fatalf("split at %d,%d: %v", i, j, err)
				}
				check(got, fmt.Sprint(i, ",", j))
			}
		}
	}
	t.Run("small-every-offset", func(t *testing.T) { run(t, small, nil) })
	t.Run("big-header-offsets", func(t *testing.T) {
		// Every offset through the first frame and the big frame's header,
		// then a sample through its payload, and every offset of the last
		// 30 bytes (negative offsets count from the end).
		var offs []int
		for i := 0; i <= 30; i++ {
			offs = append(offs, i)
		}
		for i := 31; i < 66000; i += 4093 {
			offs = append(offs, i)
		}
		for i := -30; i < 0; i++ {
			offs = append(offs, i)
		}
		run(t, big, offs)
	})
}

func TestDecoderByteAtATime(t *testing.T) {
	stream := append(clientFrame(t, ws.OpText, true, []byte("hello")), clientFrame(t, ws.OpText, true, bytes.Repeat([]byte("z"), 70000))...)
	var chunks [][]byte
	for i := range stream {
		chunks = append(chunks, stream[i:i+1])
	}
	got, err := feed(t, chunks, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].payload) != "hello" || len(got[1].payload) != 70000 {
		t.Fatalf("got %d frames", len(got))
	}
}

func TestDecoderErrors(t *testing.T) {
	unmasked := Frame(ws.OpText, []byte("hi"))
	cases := []struct {
		name   string
		stream []byte
		want   *CloseError
	}{
		{"oversize-16", clientFrame(t, ws.OpText, true, make([]byte, 1025)), ErrTooBig},
		{"oversize-64", clientFrame(t, ws.OpText, true, make([]byte, 70000)), ErrTooBig},
		{"unmasked", unmasked, ErrUnmasked},
		{"long-ping", clientFrame(t, ws.OpPing, true, make([]byte, 126)), ErrControlSize},
		{"fragmented-ping", clientFrame(t, ws.OpPing, false, nil), ErrControlFrag},
		{"reserved-op", clientFrame(t, 0xB, true, nil), ErrReservedOp},
	}
	for _, tc := range cases {
		for _, split := range []int{0, 1, 2, 5, len(tc.stream)} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, split), func(t *testing.T) {
				// The error must show once the header is in, whatever the split.
				split := min(split, len(tc.stream))
				_, err := feed(t, [][]byte{tc.stream[:split], tc.stream[split:]}, 1024)
				var ce *CloseError
				if !errors.As(err, &ce) || ce != tc.want {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
			})
		}
	}
}

func TestDecoderOversizeNeedsOnlyHeader(t *testing.T) {
	// A client announcing a huge frame is refused from the header alone,
	// before any payload arrives.
	hdr := encodeHeader(t, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 1 << 30})
	_, err := feed(t, [][]byte{hdr}, 65536)
	if err != ErrTooBig {
		t.Fatalf("err %v, want ErrTooBig", err)
	}
}

func TestAppendBuf(t *testing.T) {
	var b *[]byte
	var want []byte
	for i := 0; i < 50; i++ {
		p := bytes.Repeat([]byte{byte(i)}, i*37)
		b = AppendBuf(b, p)
		want = append(want, p...)
	}
	if !bytes.Equal(*b, want) {
		t.Fatal("AppendBuf lost bytes")
	}
	PutBuf(b)
}
