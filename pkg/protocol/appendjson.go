package protocol

import (
	"strconv"
	"unicode/utf8"
)

// The gateway encodes an ack and a push for every message it delivers.
// AppendJSON writes the same bytes as encoding/json.Marshal for these two
// types (a test compares them on random values of every field) without
// reflection or an intermediate buffer.

// AppendJSON appends a's JSON encoding to dst.
func (a *Ack) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, a.Type)
	dst = append(dst, `,"cmid":`...)
	dst = appendString(dst, a.ClientMsgID)
	dst = append(dst, `,"conv":`...)
	dst = appendString(dst, a.Conv)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, a.Seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, a.TS, 10)
	if a.Duplicate {
		dst = append(dst, `,"dup":true`...)
	}
	return append(dst, '}')
}

// AppendJSON appends m's JSON encoding to dst.
func (m *Message) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if m.Type != "" {
		dst = append(dst, `"type":`...)
		dst = appendString(dst, m.Type)
		dst = append(dst, ',')
	}
	dst = append(dst, `"conv":`...)
	dst = appendString(dst, m.Conv)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, m.Seq, 10)
	dst = append(dst, `,"from":`...)
	dst = appendString(dst, m.From)
	if m.To != "" {
		dst = append(dst, `,"to":`...)
		dst = appendString(dst, m.To)
	}
	if m.ClientMsgID != "" {
		dst = append(dst, `,"cmid":`...)
		dst = appendString(dst, m.ClientMsgID)
	}
	dst = append(dst, `,"content_type":`...)
	dst = appendString(dst, m.ContentType)
	dst = append(dst, `,"body":`...)
	dst = appendString(dst, m.Body)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	if m.Recalled {
		dst = append(dst, `,"recalled":true`...)
	}
	if m.RefSeq != 0 {
		dst = append(dst, `,"ref_seq":`...)
		dst = strconv.AppendInt(dst, m.RefSeq, 10)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendEscapedByte writes the JSON escape of the ASCII byte b: \" \\ \b
// \f \n \r \t, or \u00XX for any other (control characters, and the
// HTML characters appendString escapes).
func appendEscapedByte(dst []byte, b byte) []byte {
	switch b {
	case '\\', '"':
		return append(dst, '\\', b)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
}

// appendString quotes s as encoding/json does by default: ", \ and control
// characters escaped, <, > and & escaped for HTML, invalid UTF-8 replaced
// by U+FFFD, U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = appendEscapedByte(append(dst, s[start:i]...), b)
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
