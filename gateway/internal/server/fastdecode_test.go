package server

import (
	"encoding/json"
	"testing"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// Frames that take the fast path, and frames that must not (each is then
// decoded by encoding/json: the cases below check only which path).
var fastCases = []struct {
	frame string
	fast  bool
}{
	{`{"type":"send","cmid":"1764288000000000000-17","to":"bench-r17","body":"hello"}`, true},
	{` { "type" : "sync" , "rid" : "r1" , "conv" : "p:alice:bob" , "after" : 41 , "limit" : 50 } `, true},
	{"{\"type\":\"read\",\"conv\":\"g:team\",\"seq\":-0}\n", true},
	{`{"type":"send","to":"bob","body":"héllo wörld 😀","content_type":"text","group":""}`, true},
	{`{}`, true},
	{`{"seq":9223372036854775807,"after":-9223372036854775808}`, true},
	{`{"type":"send","body":"line\nbreak"}`, false}, // an escape
	{`{"type":"send","body":"a\u00e9"}`, false},     // a \u escape
	{`{"Type":"send"}`, false},                      // another case of a key
	{`{"type":"send","extra":1}`, false},            // an unknown key
	{`{"type":"send","type":"ping"}`, false},        // a key twice
	{`{"seq":"1"}`, false},                          // a wrong type
	{`{"seq":1.0}`, false},                          // a fraction
	{`{"seq":1e3}`, false},                          // an exponent
	{`{"seq":01}`, false},                           // a leading zero
	{`{"seq":9223372036854775808}`, false},          // out of range
	{`{"after":null}`, false},                       // null
	{`{"after":"x"}`, false},                        // after as a string
	{`{"body":"` + "\xff" + `"}`, false},            // invalid UTF-8
	{`{"type":"send"} x`, false},                    // trailing bytes
	{`{"type":"send",}`, false},                     // trailing comma
	{`{"type":"send"`, false},                       // cut short
	{`["type"]`, false},                             // not an object
	{"{\"body\":\"tab\there\"}", false},             // a raw control character
}

func TestFastDecode(t *testing.T) {
	for _, tc := range fastCases {
		var fast request
		got := fastDecode([]byte(tc.frame), &fast)
		if got != tc.fast {
			t.Errorf("%q: fast path %v, want %v", tc.frame, got, tc.fast)
			continue
		}
		var viaDecode, ref request
		err := decodeRequest([]byte(tc.frame), &viaDecode)
		refErr := json.Unmarshal([]byte(tc.frame), &ref)
		if (err == nil) != (refErr == nil) || viaDecode != ref {
			t.Errorf("%q: decodeRequest gave %+v, %v; encoding/json %+v, %v", tc.frame, viaDecode, err, ref, refErr)
		}
		if got && fast != ref {
			t.Errorf("%q: fast path gave %+v, encoding/json %+v", tc.frame, fast, ref)
		}
	}
}

// Whatever the fast path accepts, encoding/json accepts too and decodes to
// the same request.
func FuzzFastDecode(f *testing.F) {
	for _, tc := range fastCases {
		f.Add([]byte(tc.frame))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast request
		if !fastDecode(b, &fast) {
			return
		}
		var ref request
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("%q: fast path accepted what encoding/json refuses: %v", b, err)
		}
		if fast != ref {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, ref)
		}
	})
}

func BenchmarkDecodeRequest(b *testing.B) {
	frame := []byte(`{"type":"send","cmid":"1764288000000000000-17","to":"bench-r17","body":"` +
		`hello bob, this is a hundred-byte message body for the benchmark of the send decoding path."}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req request
			if err := decodeRequest(frame, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A MessagePack client's frame: transcoded to JSON in a pooled buffer
	// (as Message does), then the same decoding.
	mp, err := protocol.AppendMsgpack(nil, frame)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := wsframe.GetBuf(2 * len(mp))
			js, err := msgpackToJSON(*buf, mp)
			if err != nil {
				b.Fatal(err)
			}
			var req request
			if err := decodeRequest(js, &req); err != nil {
				b.Fatal(err)
			}
			*buf = js[:0]
			wsframe.PutBuf(buf)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req request
			if err := json.Unmarshal(frame, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
