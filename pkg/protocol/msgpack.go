package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The MessagePack encoding of the client protocol.
//
// A client that negotiates the WebSocket subprotocol "gochat.msgpack" sends
// and receives every protocol object as one MessagePack value in a binary
// frame: the same keys and values as the JSON form. The gateway keeps
// speaking JSON inside and transcodes at the edge: AppendJSONFromMsgpack
// turns a client's frame into JSON before the usual decoding, AppendMsgpack
// turns the gateway's JSON into MessagePack. Both work in one pass over
// their input, without recursion, and allocate nothing but dst's growth.
//
// The mapping, both ways:
//
//   - object <-> map, array <-> array, string <-> str, true, false and null
//     <-> true, false and nil. Keys keep their order; duplicates pass through.
//   - A JSON integer (no fraction, no exponent) that fits int64 or uint64
//     becomes a MessagePack integer; every other number becomes a float64,
//     and so does "-0", which an integer would turn into 0. MessagePack
//     integers of any width become JSON integers, and floats the shortest
//     number that reads back as the same float, formatted as encoding/json
//     does (3, 0.5, 1767000000000, 1e+21). A float with an integral value
//     below 1e21 is thus written like an integer, which lets the gateway
//     decode it into an int64 field (some client libraries send every
//     number as a double).
//   - Every header (str, array, map, integer) takes the smallest form the
//     MessagePack spec allows, and non-negative integers always use positive
//     fixint or uint8..uint64. The output for a given value is then
//     canonical: what AppendMsgpack makes of AppendJSONFromMsgpack's output
//     goes to JSON and back to the same bytes, and tests and client
//     developers can compare frames byte for byte. (A float with an
//     integral value comes back as an integer: 1.0 is written "1".)
//     Lengths of JSON strings, arrays and objects are known only at their
//     end; the header is reserved first and its content moved when the
//     final header has another size (rare: strings longer than 31 bytes
//     with escapes, containers with more than 15 elements).
//   - bin is read as a string when it holds valid UTF-8: libraries write
//     byte strings (Python bytes, Uint8Array, []byte) as bin, and the
//     protocol has no binary fields, so a bin can only mean text. Strings
//     are always written as str.
//
// Rejected, with an error that says what and at which byte:
//
//   - in MessagePack: truncated values, trailing bytes, extension types
//     (timestamps included: JSON has nothing for them and the protocol uses
//     none), the never-used byte 0xc1, map keys that are not strings,
//     invalid UTF-8 in str or bin, NaN and infinities (no JSON form);
//   - in JSON: anything RFC 8259 rejects, plus invalid UTF-8 in strings
//     (which encoding/json would replace with U+FFFD, but str must be
//     UTF-8) and numbers beyond float64's range (1e400);
//   - both ways: nesting deeper than MaxMsgpackDepth.

// MaxMsgpackDepth bounds nesting of arrays and maps in both directions. The
// deepest protocol object nests three levels (a sync reply's messages); 32
// leaves room while keeping the stack of open containers a fixed array, so
// hostile frames cost no recursion and no allocation.
const MaxMsgpackDepth = 32

// Every error of AppendMsgpack matches ErrBadJSONValue and every error of
// AppendJSONFromMsgpack matches ErrBadMsgpack (errors.Is). Their messages
// are shown to client developers.
var (
	ErrBadMsgpack   = errors.New("msgpack: invalid value")
	ErrBadJSONValue = errors.New("json: invalid value")
)

// transcodeError is a specific error of kind ErrBadMsgpack or ErrBadJSONValue.
type transcodeError struct {
	kind error
	msg  string
}

func (e *transcodeError) Error() string        { return e.msg }
func (e *transcodeError) Is(target error) bool { return target == e.kind }

func msgpackErr(format string, args ...any) error {
	return &transcodeError{ErrBadMsgpack, "msgpack: " + fmt.Sprintf(format, args...)}
}

func jsonErr(format string, args ...any) error {
	return &transcodeError{ErrBadJSONValue, "json: " + fmt.Sprintf(format, args...)}
}

// Header kinds, named by their fix form's first byte.
const (
	kindMap   = 0x80
	kindArray = 0x90
	kindStr   = 0xa0
)

// appendHeader appends the smallest str, array or map header for length n
// (n < 1<<32).
func appendHeader(dst []byte, kind byte, n int) []byte {
	switch {
	case n < 16 || kind == kindStr && n < 32:
		return append(dst, kind|byte(n))
	case kind == kindStr && n < 256:
		return append(dst, 0xd9, byte(n))
	}
	// The 16-bit codes; each 32-bit code is one more.
	code := byte(0xde) // map 16
	switch kind {
	case kindStr:
		code = 0xda
	case kindArray:
		code = 0xdc
	}
	if n < 1<<16 {
		return append(dst, code, byte(n>>8), byte(n))
	}
	return append(dst, code+1, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// fixHeader replaces the have-byte header at dst[at:] by the smallest header
// for n, moving what follows it when the sizes differ.
func fixHeader(dst []byte, at, have int, kind byte, n int) []byte {
	var buf [5]byte
	h := appendHeader(buf[:0], kind, n)
	if d := len(h) - have; d > 0 {
		end := len(dst)
		dst = append(dst, buf[:d]...) // room only; overwritten by the copy
		copy(dst[at+len(h):], dst[at+have:end])
	} else if d < 0 {
		copy(dst[at+len(h):], dst[at+have:])
		dst = dst[:len(dst)+d]
	}
	copy(dst[at:], h)
	return dst
}

// AppendMsgpack appends to dst the MessagePack form of the one JSON value in js
// (leading/trailing JSON whitespace allowed; anything else after the value is an error).
// On error it returns dst at its original length, and the error matches
// ErrBadJSONValue.
func AppendMsgpack(dst, js []byte) ([]byte, error) {
	if uint64(len(js)) > math.MaxUint32 {
		// Then no string or container in it can outgrow a 32-bit header.
		return dst, jsonErr("input of %d bytes is too large", len(js))
	}
	out, err := appendMsgpack(dst, js)
	if err != nil {
		return out[:len(dst)], err
	}
	return out, nil
}

func appendMsgpack(dst, js []byte) ([]byte, error) {
	// The containers being written, innermost last: where the header went
	// and how many elements (pairs for a map) have been written so far.
	var stack [MaxMsgpackDepth]struct {
		at, n int
		kind  byte
	}
	depth := 0
	var err error
	i := skipSpace(js, 0)
	for {
		// A value starts at js[i]; in an object its key is already written.
		if i >= len(js) {
			return dst, unexpected(js, i, "")
		}
		switch c := js[i]; {
		case c == '{' || c == '[':
			if depth == MaxMsgpackDepth {
				return dst, jsonErr("nesting deeper than %d at byte %d", MaxMsgpackDepth, i)
			}
			kind, end := byte(kindArray), byte(']')
			if c == '{' {
				kind, end = kindMap, '}'
			}
			dst = append(dst, kind) // empty for now: fixed when the end is seen
			i = skipSpace(js, i+1)
			if i < len(js) && js[i] == end {
				i++
				break
			}
			stack[depth].at, stack[depth].n, stack[depth].kind = len(dst)-1, 0, kind
			depth++
			if kind == kindMap {
				if dst, i, err = appendKey(dst, js, i); err != nil {
					return dst, err
				}
			}
			continue
		case c == '"':
			dst, i, err = appendStrFromJSON(dst, js, i)
		case c == '-' || c >= '0' && c <= '9':
			dst, i, err = appendNumber(dst, js, i)
		case bytes.HasPrefix(js[i:], []byte("true")):
			dst, i = append(dst, 0xc3), i+4
		case bytes.HasPrefix(js[i:], []byte("false")):
			dst, i = append(dst, 0xc2), i+5
		case bytes.HasPrefix(js[i:], []byte("null")):
			dst, i = append(dst, 0xc0), i+4
		default:
			return dst, unexpected(js, i, "")
		}
		if err != nil {
			return dst, err
		}
		// A value ended before js[i]: count it, close the containers that
		// end here, and stop before the next value.
		for {
			i = skipSpace(js, i)
			if depth == 0 {
				if i < len(js) {
					return dst, unexpected(js, i, " after the value")
				}
				return dst, nil
			}
			top := &stack[depth-1]
			top.n++
			end := byte(']')
			if top.kind == kindMap {
				end = '}'
			}
			if i < len(js) && js[i] == ',' {
				i = skipSpace(js, i+1)
				if top.kind == kindMap {
					if dst, i, err = appendKey(dst, js, i); err != nil {
						return dst, err
					}
				}
				break
			}
			if i >= len(js) || js[i] != end {
				return dst, unexpected(js, i, ", want ',' or '"+string(rune(end))+"'")
			}
			i++
			dst = fixHeader(dst, top.at, 1, top.kind, top.n)
			depth--
		}
	}
}

// appendKey writes the object key at js[i] and skips the colon after it,
// returning where the value starts.
func appendKey(dst, js []byte, i int) ([]byte, int, error) {
	if i >= len(js) || js[i] != '"' {
		return dst, i, unexpected(js, i, ", want a string key")
	}
	dst, i, err := appendStrFromJSON(dst, js, i)
	if err != nil {
		return dst, i, err
	}
	if i = skipSpace(js, i); i >= len(js) || js[i] != ':' {
		return dst, i, unexpected(js, i, ", want ':'")
	}
	return dst, skipSpace(js, i+1), nil
}

func skipSpace(js []byte, i int) int {
	for i < len(js) && (js[i] == ' ' || js[i] == '\n' || js[i] == '\r' || js[i] == '\t') {
		i++
	}
	return i
}

// unexpected is the error for the byte at js[i] (or the end of input),
// which the caller did not expect; hint says where or what was wanted.
func unexpected(js []byte, i int, hint string) error {
	if i >= len(js) {
		return jsonErr("unexpected end of input at byte %d", i)
	}
	what := fmt.Sprintf("byte 0x%02x", js[i])
	if c := js[i]; c >= 0x20 && c < 0x7f {
		what = strconv.QuoteRune(rune(c))
	}
	return jsonErr("unexpected %s at byte %d%s", what, i, hint)
}

// appendStrFromJSON writes the JSON string at js[i] (the opening quote) as a
// str and returns the index after its closing quote.
func appendStrFromJSON(dst, js []byte, i int) ([]byte, int, error) {
	// Find the closing quote first: the raw length bounds the decoded one
	// (every escape is longer than what it stands for), so the header is
	// reserved for it and only shrinks if escapes make the string shorter.
	escaped := false
	j := i + 1
	for ; j < len(js); j++ {
		if plain[js[j]] {
			continue
		}
		if js[j] == '"' {
			break
		}
		if js[j] < 0x20 {
			return dst, j, jsonErr("control character in string at byte %d", j)
		}
		escaped = true // a backslash: skip what it escapes
		j++
	}
	if j >= len(js) {
		return dst, j, jsonErr("unterminated string at byte %d", i)
	}
	start, raw := i+1, js[i+1:j]
	at := len(dst)
	dst = appendHeader(dst, kindStr, len(raw))
	have := len(dst) - at
	for k := 0; k < len(raw); {
		// Copy the run before the next escape; a backslash cannot be part
		// of a multi-byte character, so each run is checked on its own.
		e := bytes.IndexByte(raw[k:], '\\')
		if e < 0 {
			e = len(raw)
		} else {
			e += k
		}
		if bad := invalidUTF8(raw[k:e]); bad >= 0 {
			return dst, j, jsonErr("invalid UTF-8 in string at byte %d", start+k+bad)
		}
		dst = append(dst, raw[k:e]...)
		if e == len(raw) {
			break
		}
		// The scan above made sure a byte follows the backslash.
		k = e + 2
		c := raw[e+1]
		if x := strings.IndexByte(`"\/bfnrt`, c); x >= 0 {
			dst = append(dst, "\"\\/\b\f\n\r\t"[x])
			continue
		}
		switch c {
		case 'u':
			r, ok := hex4(raw, e+2)
			if !ok {
				return dst, j, jsonErr("invalid escape in string at byte %d", start+e)
			}
			k = e + 6
			// A high surrogate followed by an escaped low one is one
			// character. A lone surrogate becomes U+FFFD (AppendRune does
			// that), as encoding/json does.
			if utf16.IsSurrogate(r) && k+1 < len(raw) && raw[k] == '\\' && raw[k+1] == 'u' {
				if r2, ok := hex4(raw, k+2); ok {
					if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
						r, k = pair, k+6
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, j, jsonErr("invalid escape in string at byte %d", start+e)
		}
	}
	if escaped {
		dst = fixHeader(dst, at, have, kindStr, len(dst)-at-have)
	}
	return dst, j + 1, nil
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// invalidUTF8 returns the offset of the first invalid UTF-8 in s, or -1.
func invalidUTF8(s []byte) int {
	if utf8.Valid(s) {
		return -1
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// appendNumber writes the JSON number at js[i] and returns the index after it.
func appendNumber(dst, js []byte, i int) ([]byte, int, error) {
	start := i
	if js[i] == '-' {
		i++
	}
	intStart := i
	i = skipDigits(js, i)
	intEnd := i
	if i == intStart {
		return dst, i, jsonErr("invalid number at byte %d", start)
	}
	if js[intStart] == '0' && i > intStart+1 {
		return dst, i, jsonErr("invalid number at byte %d (leading zero)", start)
	}
	if i < len(js) && js[i] == '.' {
		if i = skipDigits(js, i+1); js[i-1] == '.' {
			return dst, i, jsonErr("invalid number at byte %d", start)
		}
	}
	if i < len(js) && (js[i] == 'e' || js[i] == 'E') {
		if i++; i < len(js) && (js[i] == '+' || js[i] == '-') {
			i++
		}
		j := skipDigits(js, i)
		if j == i {
			return dst, i, jsonErr("invalid number at byte %d", start)
		}
		i = j
	}
	if i == intEnd {
		// An integer: exact if it fits int64 or uint64.
		var u uint64
		overflow := false
		for _, c := range js[intStart:intEnd] {
			d := uint64(c - '0')
			overflow = overflow || u > (math.MaxUint64-d)/10
			u = u*10 + d
		}
		switch neg := intStart > start; {
		case !overflow && !neg:
			return appendUint(dst, u), i, nil
		case !overflow && u != 0 && u <= 1<<63: // -0 is a float
			return appendInt(dst, int64(-u)), i, nil
		}
	}
	// The number's bytes go to ParseFloat without a copy: it keeps no
	// reference to its argument (its errors hold a clone), and string(b)
	// would allocate for numbers longer than 32 bytes.
	num := js[start:i]
	f, err := strconv.ParseFloat(unsafe.String(&num[0], len(num)), 64)
	if err != nil {
		return dst, i, jsonErr("number at byte %d is out of range", start)
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f)), i, nil
}

func skipDigits(js []byte, i int) int {
	for i < len(js) && js[i] >= '0' && js[i] <= '9' {
		i++
	}
	return i
}

func appendUint(dst []byte, u uint64) []byte {
	switch {
	case u < 128:
		return append(dst, byte(u))
	case u <= math.MaxUint8:
		return append(dst, 0xcc, byte(u))
	case u <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(u))
	case u <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(u))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), u)
}

// appendInt writes a negative integer.
func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

// AppendJSONFromMsgpack appends to dst the JSON form of mp, which must hold
// exactly one MessagePack value (trailing bytes are an error).
// On error it returns dst at its original length, and the error matches
// ErrBadMsgpack.
func AppendJSONFromMsgpack(dst, mp []byte) ([]byte, error) {
	out, err := appendJSONFromMsgpack(dst, mp)
	if err != nil {
		return out[:len(dst)], err
	}
	return out, nil
}

func appendJSONFromMsgpack(dst, mp []byte) ([]byte, error) {
	// The containers being read, innermost last, with the number of values
	// left in each: for a map, keys and values both count, so a map expects
	// a key when an even number is left.
	var stack [MaxMsgpackDepth]struct {
		left int
		end  byte // ']' or '}'
	}
	depth := 0
	p := 0
	for {
		// A value starts at mp[p].
		if p >= len(mp) {
			return dst, msgpackErr("truncated value at byte %d", p)
		}
		at, c := p, mp[p]
		p++
		isStr := c >= 0xa0 && c <= 0xbf || c >= 0xc4 && c <= 0xc6 || c >= 0xd9 && c <= 0xdb
		if depth > 0 && stack[depth-1].end == '}' && stack[depth-1].left%2 == 0 && !isStr {
			return dst, msgpackErr("map key at byte %d is not a string", at)
		}
		var kind byte // set for str, array and map, whose length is n
		var n uint64
		size := 0 // bytes of the length or number that follow c
		switch {
		case c <= 0x7f:
			dst = strconv.AppendUint(dst, uint64(c), 10)
		case c >= 0xe0:
			dst = strconv.AppendInt(dst, int64(int8(c)), 10)
		case c <= 0x8f:
			kind, n = kindMap, uint64(c&0x0f)
		case c <= 0x9f:
			kind, n = kindArray, uint64(c&0x0f)
		case c <= 0xbf:
			kind, n = kindStr, uint64(c&0x1f)
		case c == 0xc0:
			dst = append(dst, "null"...)
		case c == 0xc2:
			dst = append(dst, "false"...)
		case c == 0xc3:
			dst = append(dst, "true"...)
		case c >= 0xc4 && c <= 0xc6: // bin 8, 16, 32
			kind, size = kindStr, 1<<(c-0xc4)
		case c >= 0xd9 && c <= 0xdb: // str 8, 16, 32
			kind, size = kindStr, 1<<(c-0xd9)
		case c == 0xdc || c == 0xdd: // array 16, 32
			kind, size = kindArray, 2<<(c-0xdc)
		case c == 0xde || c == 0xdf: // map 16, 32
			kind, size = kindMap, 2<<(c-0xde)
		case c >= 0xca && c <= 0xd3: // float 32, 64, uint 8-64, int 8-64
			size = [...]int{4, 8, 1, 2, 4, 8, 1, 2, 4, 8}[c-0xca]
		case c == 0xc1:
			return dst, msgpackErr("byte 0xc1 at byte %d is not a valid type", at)
		default: // ext 8, 16, 32 and fixext 1-16
			return dst, msgpackErr("extension types are not supported (format 0x%02x at byte %d)", c, at)
		}
		if size > 0 {
			if len(mp)-p < size {
				return dst, msgpackErr("truncated value at byte %d", at)
			}
			for _, b := range mp[p : p+size] {
				n = n<<8 | uint64(b) // big-endian
			}
			p += size
		}
		switch {
		case c == 0xca || c == 0xcb:
			f, bits := math.Float64frombits(n), 64
			if c == 0xca {
				f, bits = float64(math.Float32frombits(uint32(n))), 32
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return dst, msgpackErr("NaN or infinity at byte %d has no JSON form", at)
			}
			dst = appendJSONFloat(dst, f, bits)
		case c >= 0xcc && c <= 0xcf:
			dst = strconv.AppendUint(dst, n, 10)
		case c >= 0xd0 && c <= 0xd3:
			// Sign-extend from the value's width.
			shift := 64 - 8*size
			dst = strconv.AppendInt(dst, int64(n<<shift)>>shift, 10)
		case kind == kindStr:
			if n > uint64(len(mp)-p) {
				return dst, msgpackErr("truncated value at byte %d", at)
			}
			s := mp[p : p+int(n)]
			if bad := invalidUTF8(s); bad >= 0 {
				return dst, msgpackErr("invalid UTF-8 in string at byte %d", p+bad)
			}
			p += int(n)
			dst = appendQuoted(dst, s)
		case kind == kindArray || kind == kindMap:
			// Every element takes at least one byte: a length the rest of
			// the input cannot hold fails here, before anything is looped
			// over or allocated for it.
			if kind == kindMap {
				n *= 2
			}
			if n > uint64(len(mp)-p) {
				return dst, msgpackErr("truncated value at byte %d", at)
			}
			if depth == MaxMsgpackDepth {
				return dst, msgpackErr("nesting deeper than %d at byte %d", MaxMsgpackDepth, at)
			}
			start, end := byte('['), byte(']')
			if kind == kindMap {
				start, end = '{', '}'
			}
			if n == 0 {
				dst = append(dst, start, end)
				break
			}
			stack[depth].left, stack[depth].end = int(n), end
			depth++
			dst = append(dst, start)
			continue
		}
		// A value ended before mp[p]: close the containers that end here
		// and write the separator before the next value.
		for {
			if depth == 0 {
				if extra := len(mp) - p; extra > 0 {
					return dst, msgpackErr("%d more byte(s) after the value, from byte %d", extra, p)
				}
				return dst, nil
			}
			top := &stack[depth-1]
			if top.left--; top.left > 0 {
				if top.end == '}' && top.left%2 == 1 {
					dst = append(dst, ':') // after a key
				} else {
					dst = append(dst, ',')
				}
				break
			}
			dst = append(dst, top.end)
			depth--
		}
	}
}

// plain tells the bytes that JSON strings hold as they are: all but '"',
// '\\' and control characters.
var plain = func() (t [256]bool) {
	for b := range t {
		t[b] = b >= 0x20 && b != '"' && b != '\\'
	}
	return t
}()

// appendQuoted writes the valid UTF-8 s as a JSON string, escaping only
// what JSON requires: '"', '\\' and control characters.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, b := range s {
		if plain[b] {
			continue
		}
		dst = appendEscapedByte(append(dst, s[start:i]...), b)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFloat writes f as encoding/json does: plain decimals from 1e-6
// to 1e21, exponents outside. A client library that sends every number as
// a double (a seq of 5 as 5.0, a timestamp as 1.767e12) thus gives JSON
// integers the gateway reads into its integer fields, where the shortest
// 'g' form (1.767e+12) would be refused.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// e-09 -> e-9, as encoding/json writes it.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}
