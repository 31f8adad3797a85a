package handler_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gochat-im/gochat/dataproxy/internal/handler"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
)

// BenchmarkGetGroupRoutesRPC measures GetGroupRoutes through Kitex (client
// and server in this process, real Redis) for a group whose members are
// all online, one device each: what logic pays per group message.
//
//	go test -run - -bench GetGroupRoutesRPC -benchmem ./internal/handler
func BenchmarkGetGroupRoutesRPC(b *testing.B) {
	for _, online := range []int{100, 10_000} {
		b.Run(fmt.Sprint("online=", online), func(b *testing.B) {
			e := startCfg(b, handler.Config{})
			ctx := context.Background()
			uids := make([]string, online)
			for i := range uids {
				uids[i] = fmt.Sprintf("member%05d", i)
			}
			mustUsers(b, e.cli, uids...)
			if _, err := e.cli.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: "big", Owner: uids[0], Members: uids[1:min(1000, online)]}); err != nil {
				b.Fatal(err)
			}
			for lo := 1000; lo < online; lo += 1000 {
				if _, err := e.cli.AddGroupMembers(ctx, &dataproxy.GroupMembersReq{GroupId: "big", Uids: uids[lo:min(lo+1000, online)]}); err != nil {
					b.Fatal(err)
				}
			}
			for lo := 0; lo < online; lo += 1000 {
				var rs []*common.Route
				for i, u := range uids[lo:min(lo+1000, online)] {
					rs = append(rs, &common.Route{Uid: u, Device: "phone", GatewayId: fmt.Sprint("gw-", i%8), ConnId: int64(lo + i)})
				}
				if _, err := e.cli.SetRoutes(ctx, &dataproxy.SetRoutesReq{Routes: rs}); err != nil {
					b.Fatal(err)
				}
			}
			req := &dataproxy.GetGroupRoutesReq{GroupId: "big"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := e.cli.GetGroupRoutes(ctx, req)
				if err != nil || len(resp.Routes) != online {
					b.Fatalf("%d routes, %v", len(resp.Routes), err)
				}
			}
		})
	}
}

// BenchmarkGetUserCursorsRPC measures GetUserCursors through Kitex for a
// heartbeat batch of users, each in 20 conversations, everything cached.
//
//	go test -run - -bench GetUserCursorsRPC -benchmem ./internal/handler
func BenchmarkGetUserCursorsRPC(b *testing.B) {
	for _, users := range []int{1, 100} {
		b.Run(fmt.Sprint("users=", users), func(b *testing.B) {
			e := startCfg(b, handler.Config{})
			ctx := context.Background()
			uids := make([]string, users)
			var items []*dataproxy.AppendItem
			for i := range uids {
				uids[i] = fmt.Sprintf("user%04d", i)
				for k := range 20 {
					peer := fmt.Sprintf("peer%02d", k)
					items = append(items, &dataproxy.AppendItem{ConvId: "p:" + peer + ":" + uids[i], Sender: uids[i], Recipient: peer,
						ClientMsgId: fmt.Sprint(i, "-", k), Body: "x"})
				}
			}
			for lo := 0; lo < len(items); lo += 1000 {
				if _, err := e.cli.AppendMessages(ctx, &dataproxy.AppendMessagesReq{Items: items[lo:min(lo+1000, len(items))]}); err != nil {
					b.Fatal(err)
				}
			}
			req := &dataproxy.GetUserCursorsReq{Uids: uids}
			if resp, err := e.cli.GetUserCursors(ctx, req); err != nil || resp.Cursors[uids[0]] != 20 {
				b.Fatalf("cursors %v %v", resp, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.cli.GetUserCursors(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
