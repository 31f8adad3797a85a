package wsframe

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
)

func BenchmarkParseHeader(b *testing.B) {
	for _, tc := range headerCases {
		buf := encodeHeader(b, tc.h)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, _, err := ParseHeader(buf)
				if err != nil || h.Length != tc.h.Length {
					b.Fatal(err)
				}
			}
		})
	}
}

var benchSizes = []int{16, 125, 1024, 4000}

// BenchmarkDecode measures one client frame arriving in a netpoll buffer
// and being parsed, checked and unmasked in place, then the buffer released,
// as OnRequest does.
func BenchmarkDecode(b *testing.B) {
	for _, n := range benchSizes {
		f := clientFrame(b, ws.OpText, true, bytes.Repeat([]byte("x"), n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			lb := netpoll.NewLinkBuffer()
			defer lb.Close()
			var d Decoder
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				_, _ = lb.WriteBinary(f) // copies: f is under the 4 KiB link threshold
				_ = lb.Flush()
				h, p, err := d.Next(lb, 1<<20)
				if err != nil || len(p) != n || h.OpCode != ws.OpText {
					b.Fatal(err)
				}
				_ = lb.Release()
			}
		})
	}
}

// BenchmarkDecodeSplit measures a frame that arrives in two reads, so the
// decoder assembles it in a pooled buffer.
func BenchmarkDecodeSplit(b *testing.B) {
	f := clientFrame(b, ws.OpText, true, bytes.Repeat([]byte("x"), 1024))
	half := len(f) / 2
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		_, _ = lb.WriteBinary(f[:half])
		_ = lb.Flush()
		if _, _, err := d.Next(lb, 1<<20); err != ErrMore {
			b.Fatal(err)
		}
		_ = lb.Release()
		_, _ = lb.WriteBinary(f[half:])
		_ = lb.Flush()
		if _, p, err := d.Next(lb, 1<<20); err != nil || len(p) != 1024 {
			b.Fatal(err)
		}
		_ = lb.Release()
	}
}

// BenchmarkWriteFrame measures writing one prebuilt server frame (encoded
// once, shared by every target) into a connection's netpoll output buffer
// and flushing it; the "socket" side is drained with Skip/Release.
func BenchmarkWriteFrame(b *testing.B) {
	for _, n := range benchSizes {
		f := Frame(ws.OpText, bytes.Repeat([]byte("x"), n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			lb := netpoll.NewLinkBuffer()
			defer lb.Close()
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				_, _ = lb.WriteBinary(f)
				_ = lb.Flush()
				_ = lb.Skip(lb.Len())
				_ = lb.Release()
			}
		})
	}
}

// BenchmarkPutHeader measures writing a header straight into netpoll's
// output buffer with Malloc, the path for frames built per connection.
func BenchmarkPutHeader(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 100)
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	b.ReportAllocs()
	for b.Loop() {
		hdr, _ := lb.Malloc(ServerHeaderLen(len(payload)))
		PutHeader(hdr, ws.OpText, len(payload))
		_, _ = lb.WriteBinary(payload)
		_ = lb.Flush()
		_ = lb.Skip(lb.Len())
		_ = lb.Release()
	}
}
