package handler

import (
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/routes"
	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// MaxGatewayID is the longest gateway id a route may name.
const MaxGatewayID = 128

// Conversions between the wire types and the store's and route table's.
// A nil entry in a list becomes a zero value, which the store then rejects
// item by item (or the route check rejects).

func appendItems(in []*dataproxy.AppendItem) []store.AppendItem {
	out := make([]store.AppendItem, len(in))
	for i, it := range in {
		if it == nil {
			continue
		}
		out[i] = store.AppendItem{
			ConvID: it.ConvId, Sender: it.Sender, Recipient: it.Recipient, ClientMsgID: it.ClientMsgId,
			ContentType: it.ContentType, Body: it.Body, CreatedAtMs: it.CreatedAtMs,
			RecallSeq: it.RecallSeq, RecallWindowMs: it.RecallWindowMs, ByOperator: it.ByOperator,
		}
	}
	return out
}

func appendResults(in []store.AppendResult) []*dataproxy.AppendResult_ {
	out := make([]*dataproxy.AppendResult_, len(in))
	for i, r := range in {
		out[i] = &dataproxy.AppendResult_{
			Seq: r.Seq, Duplicate: r.Duplicate, CreatedAtMs: r.CreatedAtMs, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
		}
	}
	return out
}

func messages(in []store.Message) []*common.Message {
	out := make([]*common.Message, len(in))
	for i := range in {
		out[i] = message(&in[i])
	}
	return out
}

func message(m *store.Message) *common.Message {
	return &common.Message{
		ConvId: m.ConvID, Seq: m.Seq, Sender: m.Sender, Recipient: m.Recipient, ClientMsgId: m.ClientMsgID,
		ContentType: m.ContentType, Body: m.Body, CreatedAtMs: m.CreatedAtMs, Recalled: m.Recalled, RefSeq: m.RefSeq,
	}
}

func conversations(in []store.Conversation) []*common.Conversation {
	out := make([]*common.Conversation, len(in))
	for i, c := range in {
		out[i] = &common.Conversation{ConvId: c.ConvID, Kind: c.Kind, Peer: c.Peer, LastSeq: c.LastSeq, UpdatedAtMs: c.UpdatedAtMs,
			ReadSeq: c.ReadSeq, DeliveredSeq: c.DeliveredSeq, Unread: c.Unread, Name: c.Name}
	}
	return out
}

func groupOut(g store.Group) *common.Group {
	return &common.Group{GroupId: g.ID, Name: g.Name, Owner: g.Owner, CreatedAtMs: g.CreatedAtMs, MemberCount: int32(g.MemberCount),
		Dissolved: g.DissolvedAtMs != 0}
}

func groupsOut(in []store.Group) []*common.Group {
	out := make([]*common.Group, len(in))
	for i, g := range in {
		out[i] = groupOut(g)
	}
	return out
}

func membersOut(in []store.GroupMember) []*common.GroupMember {
	out := make([]*common.GroupMember, len(in))
	for i, m := range in {
		out[i] = &common.GroupMember{Uid: m.UID, Role: m.Role, JoinedAtMs: m.JoinedAtMs}
	}
	return out
}

func cursorsIn(in []*dataproxy.CursorUpdate) []store.CursorUpdate {
	out := make([]store.CursorUpdate, len(in))
	for i, c := range in {
		if c != nil {
			out[i] = store.CursorUpdate{UID: c.Uid, ConvID: c.ConvId, DeliveredSeq: c.DeliveredSeq, ReadSeq: c.ReadSeq}
		}
	}
	return out
}

func cursorsOut(in []store.CursorUpdate) []*dataproxy.CursorUpdate {
	out := make([]*dataproxy.CursorUpdate, len(in))
	for i, c := range in {
		out[i] = &dataproxy.CursorUpdate{Uid: c.UID, ConvId: c.ConvID, DeliveredSeq: c.DeliveredSeq, ReadSeq: c.ReadSeq}
	}
	return out
}

func usersIn(in []*common.User) []store.User {
	out := make([]store.User, len(in))
	for i, u := range in {
		if u != nil {
			out[i] = store.User{UID: u.Uid, Name: u.Name, CreatedAtMs: u.CreatedAtMs}
		}
	}
	return out
}

func usersOut(in []store.User) []*common.User {
	out := make([]*common.User, len(in))
	for i, u := range in {
		out[i] = &common.User{Uid: u.UID, Name: u.Name, CreatedAtMs: u.CreatedAtMs}
	}
	return out
}

// routesIn checks and converts routes; one bad route rejects the call.
func routesIn(in []*common.Route) ([]routes.Route, error) {
	out := make([]routes.Route, len(in))
	for i, r := range in {
		if r == nil {
			return nil, errcode.Biz(errcode.BadField, "route %d is missing", i)
		}
		if !ids.ValidUID(r.Uid) || !ids.ValidDevice(r.Device) {
			return nil, errcode.Biz(errcode.BadField, "route %d: bad uid or device", i)
		}
		if r.GatewayId == "" || len(r.GatewayId) > MaxGatewayID {
			return nil, errcode.Biz(errcode.BadField, "route %d: gateway id must be 1-%d bytes", i, MaxGatewayID)
		}
		out[i] = routes.Route{UID: r.Uid, Device: r.Device, GatewayID: r.GatewayId, ConnID: r.ConnId}
	}
	return out, nil
}

// routesOut converts routes with two allocations, whatever their number
// (a large group's route set holds thousands).
func routesOut(in []routes.Route) []*common.Route {
	out := make([]*common.Route, len(in))
	backing := make([]common.Route, len(in))
	for i, r := range in {
		backing[i] = common.Route{Uid: r.UID, Device: r.Device, GatewayId: r.GatewayID, ConnId: r.ConnID}
		out[i] = &backing[i]
	}
	return out
}

// routeTTL converts ttl_seconds; 0 means the table's default.
func routeTTL(sec int32) (time.Duration, error) {
	ttl := time.Duration(sec) * time.Second
	if sec < 0 || ttl > MaxRouteTTL {
		return 0, errcode.Biz(errcode.BadField, "ttl_seconds must be 0-%d", int(MaxRouteTTL/time.Second))
	}
	return ttl, nil
}

// validUIDs drops malformed uids: no such user can have a route.
func validUIDs(in []string) []string {
	out := in[:0:0]
	for _, u := range in {
		if ids.ValidUID(u) {
			out = append(out, u)
		}
	}
	return out
}
