// Package dpfake is an in-memory stand-in for the dataproxy Kitex client,
// used by logic's unit tests only. End-to-end tests run the real service.
package dpfake

import (
	"context"
	"sync"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

var _ dpclient.Client = (*DP)(nil)

// DP is an in-memory dataproxy client with the store's dedupe and
// numbering, for unit tests of logic. It is safe for concurrent use.
type DP struct {
	mu    sync.Mutex
	users map[string]bool
	last  map[string]int64
	seen  map[string]int64
	msgs  map[string][]*common.Message

	// Routes is what GetRoutes answers from.
	Routes []*common.Route
	// FailAppend fails this many AppendMessages calls with Unavailable.
	FailAppend int
	// Appends counts AppendMessages calls.
	Appends int
}

// New returns a DP knowing the given users.
func New(uids ...string) *DP {
	f := &DP{users: map[string]bool{}, last: map[string]int64{}, seen: map[string]int64{}, msgs: map[string][]*common.Message{}}
	for _, u := range uids {
		f.users[u] = true
	}
	return f
}

func (f *DP) AppendMessages(_ context.Context, req *dataproxy.AppendMessagesReq, _ ...callopt.Option) (*dataproxy.AppendMessagesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Appends++
	if f.FailAppend > 0 {
		f.FailAppend--
		return nil, errcode.Biz(errcode.Unavailable, "db down")
	}
	resp := &dataproxy.AppendMessagesResp{}
	for _, it := range req.Items {
		key := it.ConvId + "/" + it.Sender + "/" + it.ClientMsgId
		if len(it.Body) > 10 {
			resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.TooLarge), ErrorMessage: "body"})
			continue
		}
		if seq, ok := f.seen[key]; ok {
			resp.Results = append(resp.Results, &dataproxy.AppendResult_{Seq: seq, Duplicate: true})
			continue
		}
		f.last[it.ConvId]++
		f.seen[key] = f.last[it.ConvId]
		f.msgs[it.ConvId] = append(f.msgs[it.ConvId], &common.Message{ConvId: it.ConvId, Seq: f.last[it.ConvId], Sender: it.Sender,
			Recipient: it.Recipient, ClientMsgId: it.ClientMsgId, ContentType: it.ContentType, Body: it.Body, CreatedAtMs: it.CreatedAtMs})
		resp.Results = append(resp.Results, &dataproxy.AppendResult_{Seq: f.last[it.ConvId], CreatedAtMs: it.CreatedAtMs})
	}
	return resp, nil
}

func (f *DP) GetUsers(_ context.Context, req *dataproxy.GetUsersReq, _ ...callopt.Option) (*dataproxy.GetUsersResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dataproxy.GetUsersResp{}
	for _, u := range req.Uids {
		if f.users[u] {
			resp.Users = append(resp.Users, &common.User{Uid: u})
		}
	}
	return resp, nil
}

func (f *DP) GetRoutes(_ context.Context, req *dataproxy.GetRoutesReq, _ ...callopt.Option) (*dataproxy.GetRoutesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, u := range req.Uids {
		want[u] = true
	}
	resp := &dataproxy.GetRoutesResp{}
	for _, r := range f.Routes {
		if want[r.Uid] {
			resp.Routes = append(resp.Routes, r)
		}
	}
	return resp, nil
}

func (f *DP) SyncMessages(_ context.Context, req *dataproxy.SyncMessagesReq, _ ...callopt.Option) (*dataproxy.SyncMessagesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all, ok := f.msgs[req.ConvId]
	if !ok {
		return nil, errcode.Biz(errcode.ConvNotFound, "no conversation")
	}
	resp := &dataproxy.SyncMessagesResp{LastSeq: f.last[req.ConvId], Messages: []*common.Message{}}
	for _, m := range all {
		if m.Seq > req.AfterSeq {
			if int32(len(resp.Messages)) == req.Limit {
				resp.HasMore = true
				break
			}
			resp.Messages = append(resp.Messages, m)
		}
	}
	return resp, nil
}

func (f *DP) ListConversations(_ context.Context, req *dataproxy.ListConversationsReq, _ ...callopt.Option) (*dataproxy.ListConversationsResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dataproxy.ListConversationsResp{}
	for conv, last := range f.last {
		if peer, ok := ids.Peer(conv, req.Uid); ok {
			resp.Items = append(resp.Items, &common.Conversation{ConvId: conv, Kind: ids.KindP2P, Peer: peer, LastSeq: last})
		}
	}
	return resp, nil
}

func (f *DP) UpsertUsers(_ context.Context, req *dataproxy.UpsertUsersReq, _ ...callopt.Option) (*dataproxy.UpsertUsersResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int32
	for _, u := range req.Users {
		if !f.users[u.Uid] {
			f.users[u.Uid] = true
			n++
		}
	}
	return &dataproxy.UpsertUsersResp{Created: n}, nil
}

func (f *DP) SetRoutes(_ context.Context, req *dataproxy.SetRoutesReq, _ ...callopt.Option) (*dataproxy.SetRoutesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range req.Routes {
		f.delLocked(r.Uid, r.Device, "", 0)
		f.Routes = append(f.Routes, r)
	}
	return &dataproxy.SetRoutesResp{}, nil
}

func (f *DP) DelRoutes(_ context.Context, req *dataproxy.DelRoutesReq, _ ...callopt.Option) (*dataproxy.DelRoutesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range req.Routes {
		f.delLocked(r.Uid, r.Device, r.GatewayId, r.ConnId)
	}
	return &dataproxy.DelRoutesResp{}, nil
}

// delLocked drops uid's route for device; with a gateway given, only if it
// names that gateway and connection.
func (f *DP) delLocked(uid, device, gw string, conn int64) {
	out := f.Routes[:0]
	for _, r := range f.Routes {
		if r.Uid == uid && r.Device == device && (gw == "" || (r.GatewayId == gw && r.ConnId == conn)) {
			continue
		}
		out = append(out, r)
	}
	f.Routes = out
}
