package server

import (
	"encoding/json"
	"errors"
	"math"
	"unicode/utf8"
)

// decodeRequest decodes a client frame into req. Most frames are flat
// objects of known keys with plain strings and integers, and those are read
// by a one-pass scanner (fastDecode); anything else (escapes, unknown or
// repeated keys, other value types, bad JSON) goes to encoding/json, whose
// results and errors are the reference. A fuzz test checks that whenever
// fastDecode accepts a frame, encoding/json accepts it too and gives the
// same request.
//
// A frame that is valid JSON but not an object gives errNotObject, or, for
// an array, a string, a number or a boolean, encoding/json's
// *json.UnmarshalTypeError with an empty Field.
func decodeRequest(text []byte, req *request) error {
	if fastDecode(text, req) {
		return nil
	}
	*req = request{}
	if err := json.Unmarshal(text, req); err != nil {
		return err
	}
	if p := (fastParser{b: text}); !p.object() {
		return errNotObject // null: encoding/json leaves req as it is
	}
	return nil
}

var errNotObject = errors.New("frame is not a JSON object")

// Keys of request, by bit; a key seen twice sends the frame to
// encoding/json.
const (
	keyType = 1 << iota
	keyCMID
	keyTo
	keyGroup
	keyContentType
	keyBody
	keyRID
	keyConv
	keySeq
	keyAfter
	keyLimit
)

// fastDecode reads text into req and reports true, or reports false if the
// frame is not of the simple form it handles (req is then partly set).
func fastDecode(text []byte, req *request) bool {
	p := fastParser{b: text}
	if !p.object() {
		return false
	}
	seen := 0
	p.space()
	if p.byte('}') {
		return p.end()
	}
	for {
		key, ok := p.str()
		if !ok {
			return false
		}
		p.space()
		if !p.byte(':') {
			return false
		}
		p.space()
		var (
			bit int
			str *string // the field of a string-valued key
		)
		switch string(key) { // no allocation: the compiler compares the bytes
		case "type":
			bit, str = keyType, &req.Type
		case "cmid":
			bit, str = keyCMID, &req.ClientMsgID
		case "to":
			bit, str = keyTo, &req.To
		case "group":
			bit, str = keyGroup, &req.Group
		case "content_type":
			bit, str = keyContentType, &req.ContentType
		case "body":
			bit, str = keyBody, &req.Body
		case "rid":
			bit, str = keyRID, &req.RID
		case "conv":
			bit, str = keyConv, &req.Conv
		case "seq":
			bit = keySeq
			req.Seq, ok = p.int()
		case "after":
			bit = keyAfter
			var n int64
			n, ok = p.int()
			req.After = afterField{n: n}
		case "limit":
			bit = keyLimit
			var n int64
			n, ok = p.int()
			req.Limit = int(n)
			ok = ok && int64(req.Limit) == n
		default:
			return false
		}
		if str != nil {
			*str, ok = p.strValue()
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.space()
		if p.byte('}') {
			return p.end()
		}
		if !p.byte(',') {
			return false
		}
		p.space()
	}
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object reports whether the value at p starts an object.
func (p *fastParser) object() bool {
	p.space()
	return p.byte('{')
}

func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space follows.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string without escapes or control characters and returns its
// bytes (not copied).
func (p *fastParser) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false // encoding/json would replace the bad bytes
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// strValue reads a string field's value and copies it.
func (p *fastParser) strValue() (string, bool) {
	s, ok := p.str()
	if !ok {
		return "", false
	}
	return string(s), true
}

// int reads a JSON integer (no fraction or exponent) that fits an int64.
func (p *fastParser) int() (int64, bool) {
	neg := p.byte('-')
	digits := p.i
	// Accumulated as a negative number: its range reaches math.MinInt64.
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := int64(p.b[p.i] - '0')
		if n < (math.MinInt64+d)/10 {
			return 0, false // overflow
		}
		n = n*10 - d
		p.i++
	}
	switch {
	case p.i == digits:
		return 0, false
	case p.b[digits] == '0' && p.i-digits > 1:
		return 0, false // a leading zero is not JSON
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if !neg {
		if n == math.MinInt64 {
			return 0, false
		}
		n = -n
	}
	return n, true
}
