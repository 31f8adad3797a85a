package upgrade

import (
	"testing"
	"time"
)

// BenchmarkHandshake measures one complete upgrade: header checks, token
// verification and the 101 response.
func BenchmarkHandshake(b *testing.B) {
	u := newUpgrader(b)
	head := []byte(request("/ws?token="+token(b, "alice", time.Now().Add(time.Hour)), std()...))
	b.ReportAllocs()
	for b.Loop() {
		if res := u.Handle(head); !res.OK {
			b.Fatal(res.Status)
		}
	}
}
