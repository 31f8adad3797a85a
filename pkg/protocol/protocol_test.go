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
