package handler

import (
	"context"
	"encoding/json"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// ClientCall answers a client's group operation that its gateway passed
// through. Rules: any member may add members; only the owner removes
// others or dissolves; anyone but the owner may leave; only members see a
// group's details and members.
func (h *Handler) ClientCall(ctx context.Context, req *logic.ClientCallReq) (*logic.ClientCallResp, error) {
	var in protocol.GroupReq
	if err := json.Unmarshal(req.Frame, &in); err != nil {
		return nil, errcode.Biz(errcode.BadJSON, "bad frame: %v", err)
	}
	out := protocol.GroupResp{Type: in.Type, RID: in.RID}
	uid := req.Uid
	var err error
	switch in.Type {
	case protocol.TypeGroupCreate:
		var r *dataproxy.CreateGroupResp
		if r, err = h.createGroup(ctx, in.Group, in.Name, uid, in.Members); err == nil {
			out.Group = groupOut(r.Group)
		}
	case protocol.TypeGroupAdd:
		err = h.asMember(ctx, in.Group, uid, func(*common.Group) error {
			r, err := h.changeMembers(ctx, in.Group, in.Members, true)
			if err == nil {
				out.Changed, out.Group = int(r.Changed), groupOut(r.Group)
			}
			return err
		})
	case protocol.TypeGroupRemove, protocol.TypeGroupLeave:
		members := in.Members
		if in.Type == protocol.TypeGroupLeave {
			members = []string{uid}
		}
		err = h.asMember(ctx, in.Group, uid, func(g *common.Group) error {
			if in.Type == protocol.TypeGroupRemove && g.Owner != uid {
				return errcode.Biz(errcode.Forbidden, "only the owner removes members")
			}
			r, err := h.changeMembers(ctx, in.Group, members, false)
			if err == nil {
				out.Changed, out.Group = int(r.Changed), groupOut(r.Group)
			}
			return err
		})
	case protocol.TypeGroupDissolve:
		err = h.asMember(ctx, in.Group, uid, func(g *common.Group) error {
			if g.Owner != uid {
				return errcode.Biz(errcode.Forbidden, "only the owner dissolves the group")
			}
			if _, err := h.dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: in.Group, AtMs: h.now().UnixMilli()}); err != nil {
				return errcode.ToBiz(err)
			}
			g.Dissolved = true
			out.Group = groupOut(g)
			return nil
		})
	case protocol.TypeGroupInfo:
		err = h.asMember(ctx, in.Group, uid, func(g *common.Group) error {
			out.Group = groupOut(g)
			return nil
		})
	case protocol.TypeGroupMembers:
		err = h.asMember(ctx, in.Group, uid, func(*common.Group) error {
			r, err := h.dp.ListGroupMembers(ctx, &dataproxy.ListGroupMembersReq{GroupId: in.Group, AfterUid: in.After, Limit: int32(in.Limit)})
			if err != nil {
				return errcode.ToBiz(err)
			}
			for _, m := range r.Members {
				out.Members = append(out.Members, protocol.GroupMember{UID: m.Uid, Role: m.Role, JoinedAt: m.JoinedAtMs})
			}
			out.HasMore = r.HasMore
			return nil
		})
	case protocol.TypeGroups:
		var r *dataproxy.ListUserGroupsResp
		if r, err = h.dp.ListUserGroups(ctx, &dataproxy.ListUserGroupsReq{Uid: uid}); err != nil {
			err = errcode.ToBiz(err)
			break
		}
		out.Groups = []protocol.Group{}
		for _, g := range r.Groups {
			out.Groups = append(out.Groups, *groupOut(g))
		}
	default:
		return nil, errcode.Biz(errcode.UnknownType, "unknown operation %q", in.Type)
	}
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, errcode.Biz(errcode.Internal, "%v", err)
	}
	return &logic.ClientCallResp{Frame: b}, nil
}

// asMember runs fn with the group if uid is one of its members; otherwise
// the group reads as not found (its existence is not revealed). A missing
// or malformed id is the client's mistake, not an unknown group.
func (h *Handler) asMember(ctx context.Context, group, uid string, fn func(*common.Group) error) error {
	if group == "" {
		return errcode.Biz(errcode.BadField, "group missing")
	}
	if !ids.ValidConv("g:" + group) {
		return errcode.Biz(errcode.BadField, "invalid group id %q", group)
	}
	ok, err := h.isMember(ctx, group, uid)
	if err != nil {
		return errcode.ToBiz(err)
	}
	if !ok {
		return errcode.Biz(errcode.ConvNotFound, "no group %q", group)
	}
	g, err := h.dp.GetGroup(ctx, &dataproxy.GetGroupReq{GroupId: group})
	if err != nil {
		return errcode.ToBiz(err)
	}
	return fn(g.Group)
}

func groupOut(g *common.Group) *protocol.Group {
	if g == nil {
		return nil
	}
	return &protocol.Group{ID: g.GroupId, Name: g.Name, Owner: g.Owner, CreatedAt: g.CreatedAtMs,
		MemberCount: int(g.MemberCount), Dissolved: g.Dissolved}
}
