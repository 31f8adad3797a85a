package routes

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkGetGroupRoutes measures one read of a group's route set on the
// real Redis, with every member online on one device.
//
//	go test -run - -bench GetGroupRoutes -benchmem ./internal/routes
func BenchmarkGetGroupRoutes(b *testing.B) {
	for _, online := range []int{10, 1000, 10_000} {
		b.Run(fmt.Sprint("online=", online), func(b *testing.B) {
			tab, _ := newTable(b, 0)
			src := &groupsOf{of: map[string][]string{}}
			tab.groups = src
			ctx := context.Background()
			var rs []Route
			for i := range online {
				u := fmt.Sprintf("member%05d", i)
				src.of[u] = []string{"big"}
				rs = append(rs, Route{UID: u, Device: "phone", GatewayID: fmt.Sprint("gw-", i%8), ConnID: int64(i)})
			}
			for lo := 0; lo < len(rs); lo += 1000 {
				if err := tab.SetRoutes(ctx, rs[lo:min(lo+1000, len(rs))], 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := tab.GetGroupRoutes(ctx, "big")
				if err != nil || len(got) != online {
					b.Fatalf("%d routes, %v", len(got), err)
				}
			}
		})
	}
}
