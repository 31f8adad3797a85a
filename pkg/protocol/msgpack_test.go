package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// unhex reads bytes written as hex, spaces allowed.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// toMsgpack and toJSON transcode into a buffer with a prefix, and check
// that the prefix is kept and, on error, that nothing is left after it.
func toMsgpack(t testing.TB, js []byte) ([]byte, error) {
	t.Helper()
	return transcode(t, AppendMsgpack, js)
}

func toJSON(t testing.TB, mp []byte) ([]byte, error) {
	t.Helper()
	return transcode(t, AppendJSONFromMsgpack, mp)
}

func transcode(t testing.TB, fn func(dst, src []byte) ([]byte, error), src []byte) ([]byte, error) {
	t.Helper()
	out, err := fn([]byte("prefix"), src)
	if string(out[:min(len(out), 6)]) != "prefix" {
		t.Fatalf("prefix lost: %q", out)
	}
	if err != nil && len(out) != 6 {
		t.Fatalf("error %v but %d bytes appended", err, len(out)-6)
	}
	return out[6:], err
}

// testFrames are real protocol frames as the gateway writes them. None
// contains <, >, & or U+2028/2029, which encoding/json escapes and
// AppendJSONFromMsgpack does not, so they come back byte for byte.
func testFrames() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	bodies := []string{"hi bob", "", "quote \" backslash \\ slash /", "lines\nand\ttabs\r\x00\x1f\x7f",
		"é€😀 中文", strings.Repeat("long body ", 40)}
	msg := func(i int) Message {
		m := Message{Conv: "p:alice:bob", Seq: int64(i + 1), From: "alice", ContentType: "text",
			Body: bodies[i%len(bodies)], TS: 1767225600000 + int64(i)*1234}
		if i%3 == 0 {
			m.ClientMsgID = fmt.Sprintf("c-%d", r.Int64())
		}
		if i%7 == 0 {
			m.Recalled = true
		}
		if i%11 == 0 {
			m.ContentType, m.RefSeq = ContentTypeRecall, int64(i)
		}
		return m
	}
	push := msg(1)
	push.Type = TypeMsg
	sync := SyncResp{Type: TypeSync, RID: "r-9", Conv: "p:alice:bob", HasMore: true, LastSeq: 1 << 40}
	for i := range MaxSyncLimit {
		sync.Messages = append(sync.Messages, msg(i))
	}
	group := Group{ID: "g-1", Name: "team", Owner: "alice", CreatedAt: 1767225600000, MemberCount: 3}
	return map[string][]byte{
		"msg":  mustJSON(push),
		"ack":  mustJSON(Ack{Type: TypeAck, ClientMsgID: "c-1", Conv: "p:alice:bob", Seq: 42, TS: 1767225600000, Duplicate: true}),
		"sync": mustJSON(sync),
		"group_members": mustJSON(GroupResp{Type: TypeGroupMembers, RID: "r-1", Group: &group, Changed: 2,
			Members: []GroupMember{{UID: "alice", Role: "owner", JoinedAt: 1}, {UID: "bob", Role: "member", JoinedAt: 2}},
			HasMore: true, Groups: []Group{group, {ID: "g-2", Dissolved: true}}}),
		"hello": mustJSON(Hello{Type: TypeHello, UID: "alice", Device: "phone-1", ConnID: -1 << 63, HeartbeatMS: 30000, MaxBody: 65536}),
		"error": mustJSON(Error{Type: TypeError, Code: 1006, Reason: "bad_msgpack", Message: "msgpack: truncated value at byte 12", RID: "r-2"}),
		"send":  []byte(`{"type":"send","cmid":"c-1","to":"bob","body":"hi bob"}`),
	}
}

// pushFrame is a typical push: a message with a 100-byte body.
func pushFrame() []byte {
	return mustJSON(Message{Type: TypeMsg, Conv: "p:alice:bob", Seq: 123456, From: "alice", ClientMsgID: "6f1c2a9b",
		ContentType: "text", Body: strings.Repeat("0123456789", 10), TS: 1767225600000})
}

func TestMsgpackIntegers(t *testing.T) {
	for _, tc := range []struct{ js, mp string }{
		{"0", "00"}, {"127", "7f"}, {"128", "cc 80"}, {"255", "cc ff"}, {"256", "cd 0100"},
		{"65535", "cd ffff"}, {"65536", "ce 00010000"}, {"4294967295", "ce ffffffff"},
		{"4294967296", "cf 0000000100000000"}, {"9223372036854775807", "cf 7fffffffffffffff"},
		{"9223372036854775808", "cf 8000000000000000"}, {"18446744073709551615", "cf ffffffffffffffff"},
		{"-1", "ff"}, {"-32", "e0"}, {"-33", "d0 df"}, {"-128", "d0 80"}, {"-129", "d1 ff7f"},
		{"-32768", "d1 8000"}, {"-32769", "d2 ffff7fff"}, {"-2147483648", "d2 80000000"},
		{"-2147483649", "d3 ffffffff7fffffff"}, {"-9223372036854775808", "d3 8000000000000000"},
	} {
		checkBothWays(t, tc.js, unhex(tc.mp))
	}
	// Integers beyond int64 and uint64 become floats.
	for _, js := range []string{"18446744073709551616", "-9223372036854775809", "123456789012345678901234567890"} {
		f, _ := strconv.ParseFloat(js, 64)
		got, err := toMsgpack(t, []byte(js))
		want := binaryFloat(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, %v; want % x", js, got, err, want)
		}
	}
	// Any width is read, not only the smallest.
	for mp, js := range map[string]string{"cc 05": "5", "cd 0005": "5", "ce 00000005": "5",
		"cf 0000000000000005": "5", "d0 05": "5", "d0 ff": "-1", "d1 ffff": "-1", "d2 fffffffe": "-2",
		"d3 fffffffffffffffd": "-3", "d3 0000000000000100": "256", "d2 7fffffff": "2147483647"} {
		got, err := toJSON(t, unhex(mp))
		if err != nil || string(got) != js {
			t.Errorf("% x: got %s, %v; want %s", mp, got, err, js)
		}
	}
}

func binaryFloat(f float64) []byte {
	return append([]byte{0xcb}, unhex(fmt.Sprintf("%016x", math.Float64bits(f)))...)
}

// checkBothWays checks that js transcodes to mp and mp back to js.
func checkBothWays(t *testing.T, js string, mp []byte) {
	t.Helper()
	got, err := toMsgpack(t, []byte(js))
	if err != nil || !bytes.Equal(got, mp) {
		t.Errorf("AppendMsgpack(%.60s): got % .40x, %v; want % .40x", js, got, err, mp)
	}
	back, err := toJSON(t, mp)
	if err != nil || string(back) != js {
		t.Errorf("AppendJSONFromMsgpack(% .40x): got %.60s, %v; want %.60s", mp, back, err, js)
	}
}

func TestMsgpackFloats(t *testing.T) {
	for _, tc := range []struct {
		js string
		f  float64
	}{
		{"1.5", 1.5}, {"-0.25", -0.25}, {"1e2", 100}, {"1E+2", 100}, {"2.5e-3", 0.0025}, {"0.1", 0.1},
		{"-0", math.Copysign(0, -1)}, {"-0.0", math.Copysign(0, -1)}, {"0.0", 0}, {"1e-400", 0},
		{"1.7976931348623157e308", math.MaxFloat64}, {"5e-324", 5e-324},
		// Longer than 32 bytes: ParseFloat must not allocate for these either.
		{"3.14159265358979323846264338327950288419716939937510", math.Pi},
	} {
		got, err := toMsgpack(t, []byte(tc.js))
		if want := binaryFloat(tc.f); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, %v; want % x", tc.js, got, err, want)
		}
	}
	for _, tc := range []struct{ mp, js string }{
		{"cb 3ff8000000000000", "1.5"}, {"cb 4059000000000000", "100"}, {"cb 8000000000000000", "-0"},
		{"cb 0000000000000000", "0"}, {"cb 3fb999999999999a", "0.1"}, {"cb 444b1ae4d6e2ef50", "1e+21"},
		{"cb 412e848000000000", "1000000"}, {"cb 0000000000000001", "5e-324"}, {"cb 4279b69684600000", "1767000000000"},
		{"cb 7fefffffffffffff", "1.7976931348623157e+308"},
		{"ca 3fc00000", "1.5"}, {"ca 3dcccccd", "0.1"}, {"ca 4b800000", "16777216"}, {"ca 80000000", "-0"},
	} {
		got, err := toJSON(t, unhex(tc.mp))
		if err != nil || string(got) != tc.js {
			t.Errorf("% x: got %s, %v; want %s", tc.mp, got, err, tc.js)
		}
	}
	// Every finite float comes out as valid JSON that reads back as the
	// same float, and goes back to the same MessagePack unless it was
	// written as an integer.
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		f := math.Float64frombits(r.Uint64())
		if r.IntN(3) == 0 {
			f = math.Round(r.NormFloat64() * math.Pow(10, float64(r.IntN(25))))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		js, err := toJSON(t, binaryFloat(f))
		if err != nil || !json.Valid(js) {
			t.Fatalf("%v: got %s, %v", f, js, err)
		}
		if g, err := strconv.ParseFloat(string(js), 64); err != nil || math.Float64bits(g) != math.Float64bits(f) {
			t.Fatalf("%v: %s reads back as %v", f, js, g)
		}
		mp, err := toMsgpack(t, js)
		if err != nil || mp[0] == 0xcb && !bytes.Equal(mp, binaryFloat(f)) {
			t.Fatalf("%v: %s goes back as % x, %v", f, js, mp, err)
		}
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) {
			continue
		}
		js, err = toJSON(t, append([]byte{0xca}, unhex(fmt.Sprintf("%08x", math.Float32bits(f32)))...))
		if g, perr := strconv.ParseFloat(string(js), 32); err != nil || perr != nil || float32(g) != f32 {
			t.Fatalf("float32 %v: got %s, %v", f32, js, err)
		}
	}
}

// strHeader is the smallest str header for n.
func strHeader(n int) []byte {
	switch {
	case n < 32:
		return []byte{0xa0 | byte(n)}
	case n < 256:
		return []byte{0xd9, byte(n)}
	case n < 1<<16:
		return []byte{0xda, byte(n >> 8), byte(n)}
	}
	return []byte{0xdb, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func TestMsgpackStrings(t *testing.T) {
	for _, tc := range []struct {
		n      int
		header string
	}{
		{0, "a0"}, {31, "bf"}, {32, "d9 20"}, {255, "d9 ff"}, {256, "da 0100"},
		{65535, "da ffff"}, {65536, "db 00010000"},
	} {
		s := strings.Repeat("x", tc.n)
		checkBothWays(t, `"`+s+`"`, append(unhex(tc.header), s...))
		// Escapes make the JSON longer than the string: the header is
		// reserved for the JSON length and must shrink to the string's.
		esc := strings.Repeat(`\u0078`, tc.n)
		got, err := toMsgpack(t, []byte(`"`+esc+`"`))
		if want := append(unhex(tc.header), s...); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d escapes: got % .20x, %v; want % .20x", tc.n, got, err, want)
		}
	}
	// Keys take the same path as values.
	checkBothWays(t, `{"`+strings.Repeat("k", 40)+`":1}`, append(append([]byte{0x81, 0xd9, 40}, strings.Repeat("k", 40)...), 1))
}

func TestMsgpackEscapes(t *testing.T) {
	// JSON to MessagePack: what encoding/json decodes each string to.
	for _, js := range []string{
		`"\"\\\/\b\f\n\r\t"`, `"\u0041\u00e9\u20AC\u0000\u001F"`, `"\ud83d\ude00"`, `"\uD83D\uDE00x"`,
		`"\ud800"`, `"\udc00"`, `"\ud800x"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\ude00\ud83d"`,
		`"a\ud83d"`, `"\ud83d\n"`, `"\ud83d\u0041"`, `"é€😀 \u2028 <&>"`, `"` + strings.Repeat(`\n`, 300) + `"`,
	} {
		var s string
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		got, err := toMsgpack(t, []byte(js))
		if want := append(strHeader(len(s)), s...); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%.40s: got % .40x, %v; want % .40x", js, got, err, want)
		}
	}
	// MessagePack to JSON: only what JSON requires is escaped.
	for _, tc := range []struct{ s, js string }{
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`}, {"\b\f\n\r\t", `"\b\f\n\r\t"`}, {`"\`, `"\"\\"`},
		{"</script>&\u2028\u2029\x7f", "\"</script>&\u2028\u2029\x7f\""}, {"é€😀", `"é€😀"`}, {"/", `"/"`},
	} {
		checkBothWays(t, tc.js, append(strHeader(len(tc.s)), tc.s...))
	}
	// bin holding UTF-8 is read as a string.
	for mp, js := range map[string]string{"c4 00": `""`, "c4 02 c3a9": `"é"`, "c5 0001 22": `"\""`,
		"c6 00000001 61": `"a"`, "81 c4 01 6b c0": `{"k":null}`, "d9 01 61": `"a"`, "da 0001 61": `"a"`, "db 00000001 61": `"a"`} {
		got, err := toJSON(t, unhex(mp))
		if err != nil || string(got) != js {
			t.Errorf("% x: got %s, %v; want %s", mp, got, err, js)
		}
	}
}

// containerJSON and containerMsgpack build an array or object of n zeros.
func containerJSON(n int, obj bool) string {
	var b strings.Builder
	b.WriteByte("[{"[boolInt(obj)])
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if obj {
			fmt.Fprintf(&b, `"k%d":`, i)
		}
		b.WriteByte('0')
	}
	b.WriteByte("]}"[boolInt(obj)])
	return b.String()
}

func containerMsgpack(n int, obj bool) []byte {
	var b []byte
	kind := map[bool]byte{false: kindArray, true: kindMap}[obj]
	b = appendHeader(b, kind, n)
	for i := range n {
		if obj {
			k := fmt.Sprintf("k%d", i)
			b = append(append(b, strHeader(len(k))...), k...)
		}
		b = append(b, 0)
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMsgpackContainers(t *testing.T) {
	for _, tc := range []struct {
		n            int
		array, mhead string
	}{
		{0, "90", "80"}, {15, "9f", "8f"}, {16, "dc 0010", "de 0010"},
		{65535, "dc ffff", "de ffff"}, {65536, "dd 00010000", "df 00010000"},
	} {
		for _, obj := range []bool{false, true} {
			mp := containerMsgpack(tc.n, obj)
			want := map[bool]string{false: tc.array, true: tc.mhead}[obj]
			if !bytes.HasPrefix(mp, unhex(want)) {
				t.Fatalf("test helper: % .8x", mp)
			}
			checkBothWays(t, containerJSON(tc.n, obj), mp)
		}
	}
	for _, tc := range []struct{ js, mp string }{
		{`{"a":[1,{"b":null}],"c":{},"d":[],"e":true,"f":false}`,
			"85 a161 92 01 81 a162 c0 a163 80 a164 90 a165 c3 a166 c2"},
		// Order and duplicates are kept.
		{`{"b":1,"a":2,"b":3}`, "83 a162 01 a161 02 a162 03"},
		{`[[[]],{"":""}]`, "92 91 90 81 a0 a0"},
	} {
		checkBothWays(t, tc.js, unhex(tc.mp))
	}
	// A header that grows inside another container moves what follows it.
	inner := containerJSON(16, false)
	js := `{"x":[` + inner + `,` + inner + `],"y":"z"}`
	mp := unhex("82 a178 92")
	mp = append(append(append(mp, containerMsgpack(16, false)...), containerMsgpack(16, false)...), unhex("a179 a17a")...)
	checkBothWays(t, js, mp)
	// Whitespace is allowed around every token.
	got, err := toMsgpack(t, []byte(" \t\r\n{ \"a\" :\n[ 1 , \"b\" ,{ } ,[ ] ] , \"c\" : null }\n "))
	if want := unhex("82 a161 94 01 a162 80 90 a163 c0"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("with whitespace: got % x, %v; want % x", got, err, want)
	}
}

func TestMsgpackFrames(t *testing.T) {
	for name, js := range testFrames() {
		mp, err := toMsgpack(t, js)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := toJSON(t, mp)
		if err != nil || !bytes.Equal(back, js) {
			t.Fatalf("%s: round trip gives %.200s, %v\nwant %.200s", name, back, err, js)
		}
		// The MessagePack form is canonical.
		if again, err := toMsgpack(t, back); err != nil || !bytes.Equal(again, mp) {
			t.Fatalf("%s: not canonical", name)
		}
		t.Logf("%s: %d bytes of JSON, %d of MessagePack", name, len(js), len(mp))
	}
	// encoding/json escapes <, >, & and U+2028/2029; the round trip writes
	// them as they are, which decodes to the same value.
	js := mustJSON(Message{Type: TypeMsg, Conv: "p:a:b", Body: "<b>a & b</b>\u2028\u2029", TS: 1})
	mp, err := toMsgpack(t, js)
	if err != nil {
		t.Fatal(err)
	}
	back, err := toJSON(t, mp)
	if err != nil || !bytes.Contains(back, []byte("<b>a & b</b>\u2028\u2029")) || !sameJSON(t, back, js) {
		t.Fatalf("got %s, %v", back, err)
	}
}

// decodeJSON decodes js keeping numbers as json.Number.
func decodeJSON(t testing.TB, js []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %.100q: %v", js, err)
	}
	return v
}

func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	return sameValue(decodeJSON(t, a), decodeJSON(t, b))
}

// sameValue compares values decoded from JSON (numbers as json.Number) or
// MessagePack or given to a MessagePack encoder: strings and []byte alike,
// integers exactly, other numbers as float64.
func sameValue(a, b any) bool {
	if s, ok := a.([]byte); ok {
		a = string(s)
	}
	if s, ok := b.([]byte); ok {
		b = string(s)
	}
	switch x := a.(type) {
	case nil, bool, string:
		return a == b
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	ia, aInt, okA := number(a)
	ib, bInt, okB := number(b)
	if !okA || !okB {
		return false
	}
	if aInt != nil && bInt != nil {
		return *aInt == *bInt
	}
	return ia == ib
}

// integer is an integer that fits int64 or uint64.
type integer struct {
	neg bool
	abs uint64
}

// number returns v as a float64 and, for an integer, exactly.
func number(v any) (float64, *integer, bool) {
	switch x := v.(type) {
	case json.Number:
		s := x.String()
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return float64(i), intOf(i), true
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return float64(u), &integer{abs: u}, true
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		return f, nil, err == nil
	case float64:
		return x, nil, true
	case float32:
		return float64(x), nil, true
	case int:
		return float64(x), intOf(int64(x)), true
	case int8:
		return float64(x), intOf(int64(x)), true
	case int16:
		return float64(x), intOf(int64(x)), true
	case int32:
		return float64(x), intOf(int64(x)), true
	case int64:
		return float64(x), intOf(x), true
	case uint8:
		return float64(x), &integer{abs: uint64(x)}, true
	case uint16:
		return float64(x), &integer{abs: uint64(x)}, true
	case uint32:
		return float64(x), &integer{abs: uint64(x)}, true
	case uint64:
		return float64(x), &integer{abs: x}, true
	}
	return 0, nil, false
}

func intOf(i int64) *integer {
	if i < 0 {
		return &integer{neg: true, abs: uint64(-i)}
	}
	return &integer{abs: uint64(i)}
}

// vmDecode decodes mp with vmihailenco/msgpack.
func vmDecode(mp []byte) (any, error) {
	d := msgpack.NewDecoder(bytes.NewReader(mp))
	d.UseLooseInterfaceDecoding(true)
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.DecodeInterface(); err == nil {
		return nil, errors.New("trailing bytes")
	}
	return v, nil
}

// edgeJSON are JSON values that exercise every branch of AppendMsgpack.
var edgeJSON = []string{
	`0`, `-1`, `127`, `128`, `-33`, `-129`, `65536`, `-32769`, `4294967296`, `-2147483649`,
	`9223372036854775807`, `18446744073709551615`, `-9223372036854775808`, `18446744073709551616`,
	`1.5`, `-2.5e-3`, `1E400`, `1e-400`, `-0`, `0.0`, `[]`, `{}`, `""`, `null`, `true`, `false`,
	`"\u00e9\ud83d\ude00\ud800"`, `"\"\\\/\b\f\n\r\t"`, ` [ 1 , { "a" : [ ] } ] `,
	`{"a":{"b":{"c":[1,2,{"d":"e"}]}},"a":null}`, containerJSON(16, true), containerJSON(16, false),
	strings.Repeat("[", 32) + strings.Repeat("]", 32), strings.Repeat("[", 33) + strings.Repeat("]", 33),
	`"` + strings.Repeat("é", 20) + `"`, `"` + strings.Repeat(`\u00e9`, 20) + `"`,
}

func TestMsgpackAgainstVmihailenco(t *testing.T) {
	// What vmihailenco decodes from AppendMsgpack is what encoding/json
	// decodes from the JSON.
	inputs := append([]string{}, edgeJSON...)
	for _, js := range testFrames() {
		inputs = append(inputs, string(js))
	}
	for _, js := range inputs {
		mp, err := toMsgpack(t, []byte(js))
		if err != nil {
			continue // the documented refusals, tested elsewhere
		}
		v, err := vmDecode(mp)
		if err != nil {
			t.Fatalf("%.60s: vmihailenco cannot decode % .40x: %v", js, mp, err)
		}
		if !sameValue(decodeJSON(t, []byte(js)), v) {
			t.Fatalf("%.60s: vmihailenco decodes %v", js, v)
		}
	}
	// What AppendJSONFromMsgpack makes of vmihailenco's encoding is the
	// value that was encoded, with default (fixed-width) and compact ints.
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		v := randomValue(r, 0)
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.UseCompactInts(i%2 == 0)
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		js, err := toJSON(t, buf.Bytes())
		if err != nil {
			t.Fatalf("%#v: % x: %v", v, buf.Bytes(), err)
		}
		if !json.Valid(js) || !sameValue(v, decodeJSON(t, js)) {
			t.Fatalf("%#v: got %s", v, js)
		}
		// And AppendMsgpack of that JSON decodes, with vmihailenco, to
		// the same value.
		mp, err := toMsgpack(t, js)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := vmDecode(mp); err != nil || !sameValue(v, back) {
			t.Fatalf("%#v: vmihailenco decodes %#v, %v", v, back, err)
		}
	}
}

// randomValue returns a value of the kinds the protocol uses, plus floats
// and byte strings.
func randomValue(r *rand.Rand, depth int) any {
	n := 12
	if depth < 4 {
		n = 14
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return validString(r)
	case 3:
		return []byte(validString(r))
	case 4:
		return int64(r.Uint64())
	case 5:
		return r.Uint64() >> r.IntN(64)
	case 6:
		return int8(r.Uint32())
	case 7:
		return -r.Int64N(1 << r.IntN(63))
	case 8:
		return uint16(r.Uint32())
	case 9:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
	case 10:
		return math.Round(r.NormFloat64() * 1e4)
	case 11:
		return strings.Repeat("s", r.IntN(300))
	case 12:
		m := map[string]any{}
		for range r.IntN(20) {
			m[validString(r)] = randomValue(r, depth+1)
		}
		return m
	}
	s := make([]any, r.IntN(20))
	for i := range s {
		s[i] = randomValue(r, depth+1)
	}
	return s
}

func validString(r *rand.Rand) string {
	for {
		if s := randomString(r); utf8.ValidString(s) {
			return s
		}
	}
}

// badMsgpack are invalid MessagePack inputs with a part of the error they give.
var badMsgpack = []struct{ mp, err string }{
	{"", "msgpack: truncated value at byte 0"},
	{"c1", "msgpack: byte 0xc1 at byte 0 is not a valid type"},
	{"92 01 c1", "msgpack: byte 0xc1 at byte 2 is not a valid type"},
	{"c7 01 01 00", "msgpack: extension types are not supported (format 0xc7 at byte 0)"},
	{"c8 0001 01 00", "extension types"}, {"c9 00000001 01 00", "extension types"},
	{"d4 01 00", "extension types"}, {"d5 01 0000", "extension types"}, {"d7 ff 0000000000000000", "extension types"},
	{"d8 01 00000000000000000000000000000000", "extension types"},
	{"d6 ff 00000000", "extension types"}, // a timestamp
	{"81 01 01", "msgpack: map key at byte 1 is not a string"},
	{"82 a161 01 c0 01", "msgpack: map key at byte 4 is not a string"},
	{"81 90 01", "not a string"}, {"81 80 01", "not a string"}, {"81 c2 01", "not a string"},
	{"81 cb 0000000000000000 01", "not a string"}, {"81 d4 01 00 01", "not a string"},
	{"a1 ff", "msgpack: invalid UTF-8 in string at byte 1"},
	{"92 a3 61c328 00", "msgpack: invalid UTF-8 in string at byte 3"},
	{"a3 eda080", "invalid UTF-8"}, // a surrogate
	{"c4 01 ff", "invalid UTF-8"}, {"c5 0002 c328", "invalid UTF-8"}, {"81 c4 01 80 01", "invalid UTF-8"},
	{"01 02", "msgpack: 1 more byte(s) after the value, from byte 1"},
	{"90 00 00 00 00 00", "msgpack: 5 more byte(s) after the value, from byte 1"},
	{"ca 7fc00000", "msgpack: NaN or infinity at byte 0 has no JSON form"},
	{"ca 7f800000", "NaN or infinity"}, {"ca ff800000", "NaN or infinity"},
	{"cb 7ff8000000000000", "NaN or infinity"}, {"cb 7ff0000000000000", "NaN or infinity"},
	{"91 cb fff0000000000000", "msgpack: NaN or infinity at byte 1 has no JSON form"},
	{"dd ffffffff", "msgpack: truncated value at byte 0"}, {"dd ffffffff 00 00 00", "truncated"},
	{"df ffffffff", "truncated"}, {"df 80000000 a0 00", "truncated"}, {"db ffffffff 61", "truncated"},
	{"c6 ffffffff", "truncated"}, {"dc ffff", "truncated"}, {"de 0002 a0 00 a0", "truncated"},
	{"93 01 02", "msgpack: truncated value at byte 0"}, {"92 91 01", "msgpack: truncated value at byte 3"}, {"a5 6162", "truncated"}, {"cf 01", "truncated"},
	{strings.Repeat("91", 33) + "00", "msgpack: nesting deeper than 32 at byte 32"},
	{strings.Repeat("91", 32) + "90", "nesting deeper than 32"},
	{strings.Repeat("81 a0", 32) + "80", "nesting deeper than 32"},
}

func TestMsgpackErrors(t *testing.T) {
	for _, tc := range badMsgpack {
		_, err := toJSON(t, unhex(tc.mp))
		if !errors.Is(err, ErrBadMsgpack) || errors.Is(err, ErrBadJSONValue) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("% x: got %v, want %q", tc.mp, err, tc.err)
		}
	}
	// 32 levels are fine.
	for _, mp := range []string{strings.Repeat("91", 31) + "90", strings.Repeat("91", 32) + "00", strings.Repeat("81 a0", 31) + "80"} {
		if _, err := toJSON(t, unhex(mp)); err != nil {
			t.Errorf("%s: %v", mp, err)
		}
	}
	// Every proper prefix of a value is truncated.
	frames := testFrames()
	for _, name := range []string{"msg", "ack", "group_members", "hello", "error"} {
		mp, err := toMsgpack(t, frames[name])
		if err != nil {
			t.Fatal(err)
		}
		for k := range len(mp) {
			_, err := toJSON(t, mp[:k])
			if !errors.Is(err, ErrBadMsgpack) || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("%s cut at %d: %v", name, k, err)
			}
		}
	}
	// A huge claimed length fails at once, without allocating for it.
	start := time.Now()
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := AppendJSONFromMsgpack(make([]byte, 0, 64), unhex("dd ffffffff c0")); err == nil {
			t.Fatal("no error")
		}
	})
	if time.Since(start) > time.Second || allocs > 10 {
		t.Errorf("array32 of 4G elements: %v, %v allocations", time.Since(start), allocs)
	}
}

// badJSON are invalid JSON inputs with a part of the error they give.
var badJSON = []struct{ js, err string }{
	{"", "json: unexpected end of input at byte 0"}, {" \n", "unexpected end of input at byte 2"},
	{`"abc`, "json: unterminated string at byte 0"}, {`["a\"]`, "unterminated string at byte 1"}, {`"\`, "unterminated"},
	{`"\x"`, "json: invalid escape in string at byte 1"}, {`"ab\u12"`, "invalid escape in string at byte 3"},
	{`"\u12G4"`, "invalid escape"}, {`"\u"`, "invalid escape"}, {`"\U0041"`, "invalid escape"}, {`"\'"`, "invalid escape"},
	{"\"\\\n\"", "invalid escape"}, {"\"a\x01b\"", "json: control character in string at byte 2"},
	{"\"a\nb\"", "control character"}, {"\"\t\"", "control character"}, {"{\"\x00\":1}", "control character"},
	{"\"\xff\"", "json: invalid UTF-8 in string at byte 1"}, {"\"ab\xc3\"", "invalid UTF-8 in string at byte 3"},
	{"\"\\n\xed\xa0\x80\"", "invalid UTF-8 in string at byte 3"}, {"\"\xc0\xaf\"", "invalid UTF-8"},
	{"01", "json: invalid number at byte 0 (leading zero)"}, {"-01", "leading zero"}, {"00", "leading zero"},
	{"[1,01]", "invalid number at byte 3"}, {"1.", "invalid number"}, {"1.e5", "invalid number"}, {".5", "unexpected '.'"},
	{"+1", "json: unexpected '+' at byte 0"}, {"-", "invalid number"}, {"-a", "invalid number"}, {"1e", "invalid number"},
	{"1e+", "invalid number"}, {"1E-x", "invalid number"}, {"0x10", "after the value"}, {"1.5.3", "after the value"},
	{"1e400", "json: number at byte 0 is out of range"}, {"[-1e400]", "number at byte 1 is out of range"},
	{"[1,]", "json: unexpected ']' at byte 3"}, {`{"a":1,}`, "unexpected '}' at byte 7, want a string key"},
	{`{"a" 1}`, "json: unexpected '1' at byte 5, want ':'"}, {`{a:1}`, "want a string key"}, {`{"a"`, "unexpected end"},
	{"[1 2]", "json: unexpected '2' at byte 3, want ',' or ']'"}, {`{"a":1 "b":2}`, "want ',' or '}'"},
	{"[", "unexpected end of input at byte 1"}, {`{"a":`, "unexpected end"}, {"[1", "unexpected end"}, {"{", "unexpected end"},
	{"{,}", "want a string key"}, {"[,1]", "unexpected ','"}, {"[1,,2]", "unexpected ','"}, {"{\"a\":1,", "unexpected end"},
	{"tru", "json: unexpected 't' at byte 0"}, {"nul", "unexpected 'n'"}, {"True", "unexpected 'T'"}, {"truex", "unexpected 'x' at byte 4 after the value"},
	{"NaN", "unexpected 'N'"}, {"Infinity", "unexpected"}, {"-Infinity", "invalid number"}, {"'a'", "unexpected '\\''"},
	{"[1]]", "json: unexpected ']' at byte 3 after the value"}, {"{}x", "after the value"}, {"1 2", "after the value"},
	{"\xef\xbb\xbf{}", "json: unexpected byte 0xef at byte 0"}, {"[1]\x00", "unexpected byte 0x00 at byte 3 after the value"},
	{"\f1", "unexpected byte 0x0c"}, {"\u00a01", "unexpected byte 0xc2"},
	{strings.Repeat("[", 33) + strings.Repeat("]", 33), "json: nesting deeper than 32 at byte 32"},
	{strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33), "nesting deeper than 32"},
}

func TestMsgpackBadJSON(t *testing.T) {
	for _, tc := range badJSON {
		_, err := toMsgpack(t, []byte(tc.js))
		if !errors.Is(err, ErrBadJSONValue) || errors.Is(err, ErrBadMsgpack) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%.40q: got %v, want %q", tc.js, err, tc.err)
		}
		documented := strings.Contains(tc.err, "UTF-8") || strings.Contains(tc.err, "range") || strings.Contains(tc.err, "nesting")
		if json.Valid([]byte(tc.js)) != documented {
			t.Errorf("%.40q: json.Valid says %v", tc.js, json.Valid([]byte(tc.js)))
		}
	}
	for _, js := range []string{strings.Repeat("[", 32) + strings.Repeat("]", 32), strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat("}", 32)} {
		if _, err := toMsgpack(t, []byte(js)); err != nil {
			t.Errorf("32 levels: %v", err)
		}
	}
	// Every proper prefix of an object is invalid.
	js := testFrames()["group_members"]
	for k := range len(js) {
		if _, err := toMsgpack(t, js[:k]); !errors.Is(err, ErrBadJSONValue) {
			t.Fatalf("cut at %d: %v", k, err)
		}
	}
}

func TestMsgpackDoesNotAllocate(t *testing.T) {
	frames := testFrames()
	for _, js := range [][]byte{pushFrame(), frames["sync"], frames["group_members"],
		[]byte(`[` + containerJSON(70000, true) + `,"` + strings.Repeat(`\n`, 40000) + `",3.14159265358979323846264338327950288419716939937510]`)} {
		mp, err := AppendMsgpack(nil, js)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 2*len(js))
		if n := testing.AllocsPerRun(20, func() { _, err = AppendMsgpack(buf, js) }); n != 0 || err != nil {
			t.Errorf("AppendMsgpack of %d bytes: %v allocations, %v", len(js), n, err)
		}
		if n := testing.AllocsPerRun(20, func() { _, err = AppendJSONFromMsgpack(buf, mp) }); n != 0 || err != nil {
			t.Errorf("AppendJSONFromMsgpack of %d bytes: %v allocations, %v", len(mp), n, err)
		}
	}
}

func BenchmarkAppendMsgpack(b *testing.B) {
	js := pushFrame()
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendMsgpack(buf, js); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSONFromMsgpack(b *testing.B) {
	mp, err := AppendMsgpack(nil, pushFrame())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(mp)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendJSONFromMsgpack(buf, mp); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzMsgpackToJSON(f *testing.F) {
	for _, js := range testFrames() {
		mp, _ := AppendMsgpack(nil, js)
		f.Add(mp)
	}
	for _, js := range edgeJSON {
		if mp, err := AppendMsgpack(nil, []byte(js)); err == nil {
			f.Add(mp)
		}
	}
	for _, tc := range badMsgpack {
		f.Add(unhex(tc.mp))
	}
	f.Add(unhex("ca 3dcccccd"))
	f.Add(unhex("cb 412e848000000000"))
	f.Add(unhex("cb 8000000000000000"))
	f.Add(unhex("c4 02 c3a9"))
	f.Fuzz(func(t *testing.T, mp []byte) {
		js, err := toJSON(t, mp)
		if err != nil {
			if !errors.Is(err, ErrBadMsgpack) {
				t.Fatalf("error %v is not ErrBadMsgpack", err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("invalid JSON %q", js)
		}
		mp2, err := toMsgpack(t, js)
		if err != nil {
			t.Fatalf("%q: %v", js, err)
		}
		js2, err := toJSON(t, mp2)
		if err != nil || !bytes.Equal(js2, js) {
			t.Fatalf("%q comes back as %q, %v", js, js2, err)
		}
		if mp3, err := toMsgpack(t, js2); err != nil || !bytes.Equal(mp3, mp2) {
			t.Fatalf("% x is not canonical: % x, %v", mp2, mp3, err)
		}
	})
}

func FuzzJSONToMsgpack(f *testing.F) {
	for _, js := range testFrames() {
		f.Add(js)
	}
	for _, js := range edgeJSON {
		f.Add([]byte(js))
	}
	for _, tc := range badJSON {
		f.Add([]byte(tc.js))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		mp, err := toMsgpack(t, js)
		if err != nil && !errors.Is(err, ErrBadJSONValue) {
			t.Fatalf("error %v is not ErrBadJSONValue", err)
		}
		want := json.Valid(js) && utf8.Valid(js) && jsonDepth(js) <= MaxMsgpackDepth && !hugeNumber(js)
		if (err == nil) != want {
			t.Fatalf("%q: error %v, json.Valid %v", js, err, json.Valid(js))
		}
		if err != nil {
			return
		}
		back, err := toJSON(t, mp)
		if err != nil {
			t.Fatalf("%q: % x: %v", js, mp, err)
		}
		if !sameJSON(t, js, back) {
			t.Fatalf("%q comes back as %q", js, back)
		}
		// The output is canonical from then on.
		mp2, err := toMsgpack(t, back)
		if err != nil {
			t.Fatal(err)
		}
		if back2, err := toJSON(t, mp2); err != nil || !bytes.Equal(back2, back) {
			t.Fatalf("%q: %q comes back as %q, %v", js, back, back2, err)
		}
	})
}

// jsonDepth returns the deepest nesting of arrays and objects in valid JSON.
func jsonDepth(js []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(js); i++ {
		switch c := js[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// hugeNumber reports whether the valid JSON js holds a number that
// float64 cannot hold. It reads tokens, not a decoded value, which would
// lose all but one of duplicate keys.
func hugeNumber(js []byte) bool {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := strconv.ParseFloat(n.String(), 64); err != nil {
				return true
			}
		}
	}
}
