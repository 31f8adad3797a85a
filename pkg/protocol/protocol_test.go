package protocol

import (
	"strings"
	"testing"
)

func TestValidContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"": true, "text": true, "image/png": true, "application/vnd.app+json": true, "x_y-z.1": true,
		strings.Repeat("a", MaxContentTypeLen): true, strings.Repeat("a", MaxContentTypeLen+1): false,
		"text/plain; charset=utf-8": false, "with space": false, "é": false, ContentTypeRecall: false,
	} {
		if got := ValidContentType(ct); got != want {
			t.Errorf("ValidContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}
func TestCutUTF8(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 5, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // é is 2 bytes: not split
		{"héllo", 3, "hé"},
		{"日本", 4, "日"},
		{"日本", 2, ""},
		{"", 0, ""},
	} {
		if got := CutUTF8(tc.s, tc.n); got != tc.want {
			t.Errorf("CutUTF8(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// The kick frame logic's kick records carry and the one a gateway sends a
// refused connection are the same bytes.
func TestKickFrame(t *testing.T) {
	for _, tc := range []struct{ reason, device, want string }{
		{"replaced", "phone-2", `{"type":"kick","reason":"replaced","device":"phone-2"}`},
		{"same_device", "", `{"type":"kick","reason":"same_device"}`},
	} {
		if got := string(KickFrame(tc.reason, tc.device)); got != tc.want {
			t.Errorf("KickFrame(%q, %q) = %s, want %s", tc.reason, tc.device, got, tc.want)
		}
	}
}
