// Package ids defines the shape of user ids, device ids and conversation ids.
//
// User and device ids are 1-64 bytes of [A-Za-z0-9_.@-]. A one-to-one
// conversation between users a and b (a < b) has the id "p:a:b", so both
// sides and every service compute the same id with no lookup; ':' is not
// allowed in user ids for that reason. Group conversations are "g:<group>".
package ids

import "strings"

// MaxIDLen is the longest allowed user or device id.
const MaxIDLen = 64

func validToken(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidUID reports whether s is a well-formed user id.
func ValidUID(s string) bool { return validToken(s) }

// ValidDevice reports whether s is a well-formed device id.
func ValidDevice(s string) bool { return validToken(s) }

// P2P returns the conversation id of the one-to-one chat between a and b.
func P2P(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "p:" + a + ":" + b
}

// Kind names of conversations.
const (
	KindP2P   = "p2p"
	KindGroup = "group"
)

// ParseP2P returns the two users of a one-to-one conversation id.
func ParseP2P(conv string) (a, b string, ok bool) {
	rest, found := strings.CutPrefix(conv, "p:")
	if !found {
		return "", "", false
	}
	a, b, found = strings.Cut(rest, ":")
	if !found || !ValidUID(a) || !ValidUID(b) || a >= b {
		return "", "", false
	}
	return a, b, true
}

// Member reports whether uid takes part in the one-to-one conversation conv.
func Member(conv, uid string) bool {
	a, b, ok := ParseP2P(conv)
	return ok && (uid == a || uid == b)
}

// Peer returns the other user of a one-to-one conversation.
func Peer(conv, uid string) (string, bool) {
	a, b, ok := ParseP2P(conv)
	switch {
	case !ok:
		return "", false
	case uid == a:
		return b, true
	case uid == b:
		return a, true
	}
	return "", false
}

// ValidConv reports whether conv is a well-formed conversation id.
func ValidConv(conv string) bool {
	if _, _, ok := ParseP2P(conv); ok {
		return true
	}
	g, ok := strings.CutPrefix(conv, "g:")
	return ok && validToken(g)
}

// DeviceKind is the part of a device id before its first '-': "phone" for
// "phone-8f3a", "web" for "web". Login policies are set per kind.
func DeviceKind(device string) string {
	kind, _, _ := strings.Cut(device, "-")
	return kind
}
