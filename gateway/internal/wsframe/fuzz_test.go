package wsframe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
)

const fuzzMax = 4096

// decodeAll feeds chunks to a Decoder through a netpoll LinkBuffer, as
// OnRequest does, and returns the frames (payloads copied) up to the first
// error. It fails the test if the decoder leaves readable input unread
// without an error, which would make netpoll spin.
func decodeAll(t *testing.T, chunks [][]byte) ([]frame, error) {
	t.Helper()
	lb := netpoll.NewLinkBuffer()
	defer lb.Close()
	var d Decoder
	defer d.Reset()
	var out []frame
	for _, c := range chunks {
		if len(c) > 0 {
			_, _ = lb.WriteBinary(append([]byte(nil), c...))
			_ = lb.Flush()
		}
		for {
			h, p, err := d.Next(lb, fuzzMax)
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
		_ = lb.Release()
	}
	return out, nil
}

// FuzzDecoder feeds arbitrary bytes to the frame decoder, whole and split
// at a fuzzed offset: it must never panic or leave input unread, must
// produce the same frames and the same error either way, and every frame
// it accepts must obey the rules Check enforces.
func FuzzDecoder(f *testing.F) {
	mask := [4]byte{1, 2, 3, 4}
	enc := func(op ws.OpCode, fin bool, p []byte) []byte {
		var b bytes.Buffer
		_ = ws.WriteFrame(&b, ws.MaskFrameWith(ws.NewFrame(op, fin, append([]byte(nil), p...)), mask))
		return b.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	seeds := [][]byte{
		enc(ws.OpText, true, []byte(`{"type":"ping","rid":"1"}`)),
		enc(ws.OpPing, true, nil),
		enc(ws.OpPong, true, []byte("hb")),
		enc(ws.OpClose, true, []byte{3, 0xe8, 'b', 'y', 'e'}),
		enc(ws.OpText, true, bytes.Repeat([]byte("a"), 125)),
		enc(ws.OpText, true, bytes.Repeat([]byte("b"), 126)),
		enc(ws.OpText, true, bytes.Repeat([]byte("c"), 4096)),
		cat(enc(ws.OpText, false, []byte("he")), enc(ws.OpPing, true, []byte("x")), enc(ws.OpContinuation, true, []byte("llo"))),
		cat(enc(ws.OpText, true, []byte("1")), enc(ws.OpText, true, []byte("2")), enc(ws.OpText, true, []byte("3"))),
		// Invalid: unmasked, reserved bits, reserved opcodes, long or
		// fragmented control frames, too big, huge 64-bit length, truncated.
		Frame(ws.OpText, []byte("unmasked")),
		{0xc1, 0x80, 0, 0, 0, 0},
		{0x83, 0x80, 0, 0, 0, 0},
		{0x8b, 0x80, 0, 0, 0, 0},
		enc(ws.OpPing, true, bytes.Repeat([]byte("p"), 126)),
		enc(ws.OpPing, false, nil),
		enc(ws.OpText, true, bytes.Repeat([]byte("d"), 4097)),
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4},
		{0x81, 0xfe, 0x00},
		{0x81},
	}
	for _, s := range seeds {
		for _, cut := range []uint16{0, 1, 2, 7, uint16(len(s) / 2)} {
			f.Add(s, cut)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		whole, errW := decodeAll(t, [][]byte{data})
		k := int(cut) % (len(data) + 1)
		split, errS := decodeAll(t, [][]byte{data[:k], data[k:]})
		if !errors.Is(errW, errS) && !errors.Is(errS, errW) {
			t.Fatalf("split at %d: error %v, whole: %v", k, errS, errW)
		}
		if len(whole) != len(split) {
			t.Fatalf("split at %d: %d frames, whole: %d", k, len(split), len(whole))
		}
		for i := range whole {
			a, b := whole[i], split[i]
			if a.op != b.op || a.fin != b.fin || !bytes.Equal(a.payload, b.payload) {
				t.Fatalf("split at %d: frame %d differs", k, i)
			}
			if len(a.payload) > fuzzMax || a.op.IsReserved() ||
				a.op.IsControl() && (len(a.payload) > MaxControlPayload || !a.fin) {
				t.Fatalf("frame %d breaks the rules: op %d fin %v len %d", i, a.op, a.fin, len(a.payload))
			}
		}
		var ce *CloseError
		if errW != nil && !errors.As(errW, &ce) {
			t.Fatalf("error %v is not a close error", errW)
		}
	})
}
