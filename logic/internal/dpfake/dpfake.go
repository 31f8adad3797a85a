// Package dpfake is an in-memory stand-in for the dataproxy Kitex client,
// used by logic's unit tests only. End-to-end tests run the real service.
package dpfake

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/cloudwego/kitex/client/callopt"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
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
	// groups: id -> member -> role; read/delivered cursors by uid+"|"+conv.
	groups    map[string]map[string]string
	groupInfo map[string]*common.Group
	read      map[string]int64
	delivered map[string]int64

	// Routes is what GetRoutes answers from.
	Routes []*common.Route
	// FailAppend fails this many AppendMessages calls with Unavailable.
	FailAppend int
	// NoAppendRoutes makes this many AppendMessages calls with route uids
	// answer without routes (as when dataproxy's route lookup fails).
	NoAppendRoutes int
	// RouteLookups counts GetRoutes calls.
	RouteLookups int
	// Appends counts AppendMessages calls.
	Appends int
	// LookupLimit, when set, refuses GetUsers and GetRoutes calls naming
	// more users than this with BadRequest, as dataproxy's -max-batch does.
	LookupLimit int
	// HoldCursors, when set, makes UpdateCursors wait for a value on it
	// before it stores anything and answers.
	HoldCursors chan struct{}
}

// New returns a DP knowing the given users.
func New(uids ...string) *DP {
	f := &DP{users: map[string]bool{}, last: map[string]int64{}, seen: map[string]int64{}, msgs: map[string][]*common.Message{},
		groups: map[string]map[string]string{}, groupInfo: map[string]*common.Group{}, read: map[string]int64{}, delivered: map[string]int64{}}
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
			if !it.ByOperator {
				f.raiseSender(it.Sender, it.ConvId, seq)
			}
			resp.Results = append(resp.Results, &dataproxy.AppendResult_{Seq: seq, Duplicate: true})
			continue
		}
		if g, ok := strings.CutPrefix(it.ConvId, "g:"); ok {
			members, exists := f.groups[g]
			if !exists || (f.groupInfo[g].Dissolved && !it.ByOperator) {
				resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.ConvNotFound), ErrorMessage: "no group"})
				continue
			}
			if _, member := members[it.Sender]; !member && !it.ByOperator {
				resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.Forbidden), ErrorMessage: "not a member"})
				continue
			}
		}
		if it.ByOperator && (it.RecallSeq == 0 || it.ClientMsgId != protocol.OperatorRecallCMID(it.RecallSeq)) {
			resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.BadField), ErrorMessage: "not an operator recall"})
			continue
		}
		if it.RecallSeq > 0 {
			all := f.msgs[it.ConvId]
			if it.RecallSeq > int64(len(all)) || all[it.RecallSeq-1].Recalled {
				resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.BadField), ErrorMessage: "no such message"})
				continue
			}
			target := all[it.RecallSeq-1]
			if it.ByOperator && target.Sender != it.Sender {
				resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.BadField), ErrorMessage: "not the sender's message"})
				continue
			}
			if target.Sender != it.Sender || (target.CreatedAtMs < it.CreatedAtMs-it.RecallWindowMs && !it.ByOperator) {
				resp.Results = append(resp.Results, &dataproxy.AppendResult_{ErrorCode: int32(errcode.Forbidden), ErrorMessage: "cannot recall"})
				continue
			}
			target.Recalled, target.Body = true, "" // as the store does
		}
		f.last[it.ConvId]++
		f.seen[key] = f.last[it.ConvId]
		f.msgs[it.ConvId] = append(f.msgs[it.ConvId], &common.Message{ConvId: it.ConvId, Seq: f.last[it.ConvId], Sender: it.Sender,
			Recipient: it.Recipient, ClientMsgId: it.ClientMsgId, ContentType: it.ContentType, Body: it.Body, CreatedAtMs: it.CreatedAtMs,
			RefSeq: it.RecallSeq})
		if !it.ByOperator {
			f.raiseSender(it.Sender, it.ConvId, f.last[it.ConvId])
		}
		resp.Results = append(resp.Results, &dataproxy.AppendResult_{Seq: f.last[it.ConvId], CreatedAtMs: it.CreatedAtMs})
	}
	if len(req.RouteUids) > 0 {
		if f.NoAppendRoutes > 0 {
			f.NoAppendRoutes--
		} else {
			resp.Routes, resp.RoutesRead = f.routesOf(req.RouteUids), true
		}
	}
	return resp, nil
}

// routesOf returns the routes of uids. f.mu is held.
func (f *DP) routesOf(uids []string) []*common.Route {
	want := map[string]bool{}
	for _, u := range uids {
		want[u] = true
	}
	var out []*common.Route
	for _, r := range f.Routes {
		if want[r.Uid] {
			out = append(out, r)
		}
	}
	return out
}

// raiseSender raises a sender's cursors to seq, as dataproxy's append does
// (for a retransmission too). f.mu is held.
func (f *DP) raiseSender(uid, conv string, seq int64) {
	k := uid + "|" + conv
	f.read[k], f.delivered[k] = max(f.read[k], seq), max(f.delivered[k], seq)
}

func (f *DP) GetUsers(_ context.Context, req *dataproxy.GetUsersReq, _ ...callopt.Option) (*dataproxy.GetUsersResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.LookupLimit > 0 && len(req.Uids) > f.LookupLimit {
		return nil, errcode.Biz(errcode.BadRequest, "too many users")
	}
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
	f.RouteLookups++
	if f.LookupLimit > 0 && len(req.Uids) > f.LookupLimit {
		return nil, errcode.Biz(errcode.BadRequest, "too many users")
	}
	return &dataproxy.GetRoutesResp{Routes: f.routesOf(req.Uids)}, nil
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

func (f *DP) GetMessage(_ context.Context, req *dataproxy.GetMessageReq, _ ...callopt.Option) (*dataproxy.GetMessageResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok := f.seen[req.ConvId+"/"+req.Sender+"/"+req.ClientMsgId]
	if !ok {
		return &dataproxy.GetMessageResp{}, nil
	}
	return &dataproxy.GetMessageResp{Found: true, Message: f.msgs[req.ConvId][seq-1]}, nil
}

func (f *DP) UpdateCursors(ctx context.Context, req *dataproxy.UpdateCursorsReq, _ ...callopt.Option) (*dataproxy.UpdateCursorsResp, error) {
	if f.HoldCursors != nil {
		select {
		case <-f.HoldCursors:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dataproxy.UpdateCursorsResp{}
	for _, u := range req.Updates {
		k := u.Uid + "|" + u.ConvId
		f.read[k] = max(f.read[k], min(u.ReadSeq, f.last[u.ConvId]))
		f.delivered[k] = max(f.delivered[k], min(u.DeliveredSeq, f.last[u.ConvId]))
		resp.Cursors = append(resp.Cursors, &dataproxy.CursorUpdate{Uid: u.Uid, ConvId: u.ConvId, ReadSeq: f.read[k], DeliveredSeq: f.delivered[k]})
	}
	return resp, nil
}

// convsOf lists the conversations uid is in.
func (f *DP) convsOf(uid string) []string {
	var out []string
	for conv := range f.last {
		if ids.Member(conv, uid) {
			out = append(out, conv)
		}
	}
	for g, members := range f.groups {
		if _, ok := members[uid]; ok {
			out = append(out, "g:"+g)
		}
	}
	sort.Strings(out)
	return out
}

func (f *DP) GetUserCursors(_ context.Context, req *dataproxy.GetUserCursorsReq, _ ...callopt.Option) (*dataproxy.GetUserCursorsResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dataproxy.GetUserCursorsResp{Cursors: map[string]int64{}}
	for _, u := range req.Uids {
		var sum int64
		for _, c := range f.convsOf(u) {
			sum += f.last[c]
		}
		resp.Cursors[u] = sum
	}
	return resp, nil
}

func (f *DP) groupLocked(id string) *common.Group {
	g := *f.groupInfo[id]
	g.MemberCount = int32(len(f.groups[id]))
	return &g
}

func (f *DP) CreateGroup(_ context.Context, req *dataproxy.CreateGroupReq, _ ...callopt.Option) (*dataproxy.CreateGroupResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.groups[req.GroupId]; ok {
		return nil, errcode.Biz(errcode.BadField, "group exists")
	}
	members := map[string]string{req.Owner: "owner"}
	for _, m := range req.Members {
		if !f.users[m] {
			return nil, errcode.Biz(errcode.UserNotFound, "no user %q", m)
		}
		if m != req.Owner {
			members[m] = "member"
		}
	}
	f.groups[req.GroupId] = members
	f.groupInfo[req.GroupId] = &common.Group{GroupId: req.GroupId, Name: req.Name, Owner: req.Owner, CreatedAtMs: req.CreatedAtMs}
	return &dataproxy.CreateGroupResp{Group: f.groupLocked(req.GroupId)}, nil
}

func (f *DP) changeMembers(req *dataproxy.GroupMembersReq, add bool) (*dataproxy.GroupMembersResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	members, ok := f.groups[req.GroupId]
	if !ok || f.groupInfo[req.GroupId].Dissolved {
		return nil, errcode.Biz(errcode.ConvNotFound, "no group")
	}
	var n int32
	for _, u := range req.Uids {
		_, in := members[u]
		switch {
		case add && !in:
			if !f.users[u] {
				return nil, errcode.Biz(errcode.UserNotFound, "no user %q", u)
			}
			members[u] = "member"
			n++
		case !add && in:
			if members[u] == "owner" {
				return nil, errcode.Biz(errcode.Forbidden, "the owner cannot be removed")
			}
			delete(members, u)
			n++
		}
	}
	return &dataproxy.GroupMembersResp{Changed: n, Group: f.groupLocked(req.GroupId)}, nil
}

func (f *DP) AddGroupMembers(_ context.Context, req *dataproxy.GroupMembersReq, _ ...callopt.Option) (*dataproxy.GroupMembersResp, error) {
	return f.changeMembers(req, true)
}

func (f *DP) RemoveGroupMembers(_ context.Context, req *dataproxy.GroupMembersReq, _ ...callopt.Option) (*dataproxy.GroupMembersResp, error) {
	return f.changeMembers(req, false)
}

func (f *DP) GetGroup(_ context.Context, req *dataproxy.GetGroupReq, _ ...callopt.Option) (*dataproxy.GetGroupResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.groups[req.GroupId]; !ok {
		return nil, errcode.Biz(errcode.ConvNotFound, "no group")
	}
	return &dataproxy.GetGroupResp{Group: f.groupLocked(req.GroupId)}, nil
}

func (f *DP) ListGroupMembers(_ context.Context, req *dataproxy.ListGroupMembersReq, _ ...callopt.Option) (*dataproxy.ListGroupMembersResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	members, ok := f.groups[req.GroupId]
	if !ok {
		return nil, errcode.Biz(errcode.ConvNotFound, "no group")
	}
	uids := make([]string, 0, len(members))
	for u := range members {
		if u > req.AfterUid {
			uids = append(uids, u)
		}
	}
	sort.Strings(uids)
	resp := &dataproxy.ListGroupMembersResp{}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 100
	}
	if len(uids) > limit {
		uids, resp.HasMore = uids[:limit], true
	}
	for _, u := range uids {
		resp.Members = append(resp.Members, &common.GroupMember{Uid: u, Role: members[u]})
	}
	return resp, nil
}

func (f *DP) DissolveGroup(_ context.Context, req *dataproxy.DissolveGroupReq, _ ...callopt.Option) (*dataproxy.DissolveGroupResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.groupInfo[req.GroupId]
	if !ok {
		return nil, errcode.Biz(errcode.ConvNotFound, "no group")
	}
	g.Dissolved = true
	return &dataproxy.DissolveGroupResp{}, nil
}

func (f *DP) ListUserGroups(_ context.Context, req *dataproxy.ListUserGroupsReq, _ ...callopt.Option) (*dataproxy.ListUserGroupsResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dataproxy.ListUserGroupsResp{}
	for id, members := range f.groups {
		if _, ok := members[req.Uid]; ok {
			resp.Groups = append(resp.Groups, f.groupLocked(id))
		}
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].GroupId < resp.Groups[j].GroupId })
	return resp, nil
}

func (f *DP) GetGroupRoutes(_ context.Context, req *dataproxy.GetGroupRoutesReq, _ ...callopt.Option) (*dataproxy.GetGroupRoutesResp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	members := f.groups[req.GroupId]
	resp := &dataproxy.GetGroupRoutesResp{}
	if g := f.groupInfo[req.GroupId]; g != nil && g.Dissolved {
		return resp, nil // dataproxy drops a dissolved group's route set
	}
	for _, r := range f.Routes {
		if _, ok := members[r.Uid]; ok {
			resp.Routes = append(resp.Routes, r)
		}
	}
	return resp, nil
}
