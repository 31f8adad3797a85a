package protocol

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// pieces are the inputs that encoding/json treats specially, mixed into
// random strings.
var pieces = []string{"a", "Z", "9", " ", "\"", "\\", "/", "<", ">", "&", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
	"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\ufffd"}

func randomString(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		return ""
	}
	var b []byte
	for range r.IntN(12) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}

// randomize sets every field of the struct v points to, by kind, so that a
// field added later without a line in AppendJSON makes the test fail.
func randomize(t *testing.T, r *rand.Rand, v any) {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(randomString(r))
		case reflect.Int64:
			vals := []int64{0, 1, -1, 42, 1 << 53, -1 << 63, 1<<63 - 1, r.Int64()}
			f.SetInt(vals[r.IntN(len(vals))])
		case reflect.Bool:
			f.SetBool(r.IntN(2) == 0)
		default:
			t.Fatalf("field %s has kind %s: teach randomize and AppendJSON about it", rv.Type().Field(i).Name, f.Kind())
		}
	}
}

func checkSame(t *testing.T, v interface{ AppendJSON([]byte) []byte }) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := v.AppendJSON([]byte("prefix"))
	if !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
		t.Fatalf("AppendJSON of %#v\n got %s\nwant %s", v, got, want)
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var a Ack
		randomize(t, r, &a)
		checkSame(t, &a)
		var m Message
		randomize(t, r, &m)
		checkSame(t, &m)
	}
	checkSame(t, &Ack{})
	checkSame(t, &Message{})
}

func FuzzAppendString(f *testing.F) {
	for _, p := range pieces {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkSame(t, &Message{Body: s, Conv: s})
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	m := Message{Type: TypeMsg, Conv: "p:alice:bob", Seq: 42, From: "alice", To: "bob", ClientMsgID: "6f1c2a-1764288000000000000",
		ContentType: "text", Body: "hello bob, this is a hundred-byte message body for the benchmark of the push encoding path.", TS: 1764288000000}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = m.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
