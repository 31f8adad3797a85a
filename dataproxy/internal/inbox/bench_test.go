package inbox

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkCursors measures Cursors on the real Redis with every key
// cached: one call for a batch of users (as a gateway's heartbeat batch
// asks), each in convs conversations shared with the others.
//
//	go test -run - -bench Cursors -benchmem ./internal/inbox
func BenchmarkCursors(b *testing.B) {
	cases := []struct{ users, convs int }{{1, 10}, {1, 200}, {100, 20}, {1000, 20}}
	for _, c := range cases {
		b.Run(fmt.Sprintf("users=%d/convs=%d", c.users, c.convs), func(b *testing.B) {
			rdb, prefix := realRedis(b)
			s := newTruth()
			in, err := New(Config{Prefix: prefix}, rdb, s)
			if err != nil {
				b.Fatal(err)
			}
			uids := make([]string, c.users)
			seqs := map[string]int64{}
			for i := range uids {
				uids[i] = fmt.Sprint("user", i)
				for k := range c.convs {
					conv := fmt.Sprint("g:bench", (i+k)%(c.users+c.convs))
					s.convs[uids[i]] = append(s.convs[uids[i]], conv)
					s.last[conv] = int64(k + 1)
					seqs[conv] = int64(k + 1)
				}
			}
			ctx := context.Background()
			if err := in.Appended(ctx, seqs, nil); err != nil {
				b.Fatal(err)
			}
			want := s.expected(uids...)
			got, err := in.Cursors(ctx, uids) // fills the sets
			if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
				b.Fatalf("cursors %v %v", len(got), err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := in.Cursors(ctx, uids); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if s.reads != 1 {
				b.Fatalf("%d SQL reads", s.reads)
			}
		})
	}
}
