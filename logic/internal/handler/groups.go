package handler

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Group limits of one call (dataproxy enforces the group size).
const maxGroupChange = 1000

func newGroupID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func validUIDs(uids []string) error {
	if len(uids) > maxGroupChange {
		return errcode.Biz(errcode.BadRequest, "at most %d users per call", maxGroupChange)
	}
	for _, u := range uids {
		if !ids.ValidUID(u) {
			return errcode.Biz(errcode.BadField, "invalid uid %q", u)
		}
	}
	return nil
}

// createGroup is shared by the admin RPC and the client operation.
func (h *Handler) createGroup(ctx context.Context, id, name, owner string, members []string) (*dataproxy.CreateGroupResp, error) {
	if id == "" {
		id = newGroupID()
	}
	if !ids.ValidConv("g:"+id) || !ids.ValidUID(owner) || len(name) > 128 {
		return nil, errcode.Biz(errcode.BadField, "invalid group id, owner or name")
	}
	if err := validUIDs(members); err != nil {
		return nil, err
	}
	resp, err := h.dp.CreateGroup(ctx, &dataproxy.CreateGroupReq{GroupId: id, Name: name, Owner: owner, Members: members,
		CreatedAtMs: h.now().UnixMilli()})
	return resp, errcode.ToBiz(err)
}

func (h *Handler) changeMembers(ctx context.Context, group string, uids []string, add bool) (*dataproxy.GroupMembersResp, error) {
	if !ids.ValidConv("g:" + group) {
		return nil, errcode.Biz(errcode.BadField, "invalid group id")
	}
	if len(uids) == 0 {
		return nil, errcode.Biz(errcode.BadField, "no users")
	}
	if err := validUIDs(uids); err != nil {
		return nil, err
	}
	req := &dataproxy.GroupMembersReq{GroupId: group, Uids: uids, AtMs: h.now().UnixMilli()}
	var (
		resp *dataproxy.GroupMembersResp
		err  error
	)
	if add {
		resp, err = h.dp.AddGroupMembers(ctx, req)
	} else {
		resp, err = h.dp.RemoveGroupMembers(ctx, req)
	}
	return resp, errcode.ToBiz(err)
}

// CreateGroup creates a group for an app backend.
func (h *Handler) CreateGroup(ctx context.Context, req *logic.CreateGroupReq) (*logic.GroupResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	resp, err := h.createGroup(ctx, req.GroupId, req.Name, req.Owner, req.Members)
	if err != nil {
		return nil, err
	}
	return &logic.GroupResp{Group: resp.Group}, nil
}

// AddGroupMembers adds users to a group for an app backend.
func (h *Handler) AddGroupMembers(ctx context.Context, req *logic.GroupMembersReq) (*logic.GroupMembersResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	resp, err := h.changeMembers(ctx, req.GroupId, req.Uids, true)
	if err != nil {
		return nil, err
	}
	return &logic.GroupMembersResp{Changed: resp.Changed, Group: resp.Group}, nil
}

// RemoveGroupMembers removes users from a group for an app backend.
func (h *Handler) RemoveGroupMembers(ctx context.Context, req *logic.GroupMembersReq) (*logic.GroupMembersResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	resp, err := h.changeMembers(ctx, req.GroupId, req.Uids, false)
	if err != nil {
		return nil, err
	}
	return &logic.GroupMembersResp{Changed: resp.Changed, Group: resp.Group}, nil
}

// DissolveGroup ends a group for an app backend: no more messages; members
// keep read access to its history.
func (h *Handler) DissolveGroup(ctx context.Context, req *logic.GroupReq) (*logic.GroupResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	if _, err := h.dp.DissolveGroup(ctx, &dataproxy.DissolveGroupReq{GroupId: req.GroupId, AtMs: h.now().UnixMilli()}); err != nil {
		return nil, errcode.ToBiz(err)
	}
	return h.GetGroup(ctx, req)
}

// GetGroup describes a group for an app backend.
func (h *Handler) GetGroup(ctx context.Context, req *logic.GroupReq) (*logic.GroupResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	resp, err := h.dp.GetGroup(ctx, &dataproxy.GetGroupReq{GroupId: req.GroupId})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	return &logic.GroupResp{Group: resp.Group}, nil
}

// ListGroupMembers pages through a group's members for an app backend.
func (h *Handler) ListGroupMembers(ctx context.Context, req *logic.ListGroupMembersReq) (*logic.ListGroupMembersResp, error) {
	if err := h.admin(req.AdminSecret); err != nil {
		return nil, err
	}
	resp, err := h.dp.ListGroupMembers(ctx, &dataproxy.ListGroupMembersReq{GroupId: req.GroupId, AfterUid: req.AfterUid, Limit: req.Limit})
	if err != nil {
		return nil, errcode.ToBiz(err)
	}
	return &logic.ListGroupMembersResp{Members: resp.Members, HasMore: resp.HasMore}, nil
}

// isMember reports whether uid is in the group now.
func (h *Handler) isMember(ctx context.Context, group, uid string) (bool, error) {
	g, err := h.memberGroup(ctx, group, uid)
	return g != nil, err
}

// memberGroup returns group if uid is a member of it (dissolved or not),
// else nil.
func (h *Handler) memberGroup(ctx context.Context, group, uid string) (*common.Group, error) {
	resp, err := h.dp.ListUserGroups(ctx, &dataproxy.ListUserGroupsReq{Uid: uid})
	if err != nil {
		return nil, err
	}
	for _, g := range resp.Groups {
		if g.GroupId == group {
			return g, nil
		}
	}
	return nil, nil
}
