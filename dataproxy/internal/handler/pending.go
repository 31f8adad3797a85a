package handler

import (
	"context"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
)

// The calls below are in the API (groups, cursors, message lookups) but
// not implemented by this dataproxy yet: they answer Unsupported, which
// callers treat as final.

func notYet(method string) error {
	return errcode.Biz(errcode.Unsupported, "%s is not implemented by this dataproxy yet", method)
}

func (h *Handler) GetMessage(context.Context, *dataproxy.GetMessageReq) (*dataproxy.GetMessageResp, error) {
	return nil, notYet("GetMessage")
}

func (h *Handler) UpdateCursors(context.Context, *dataproxy.UpdateCursorsReq) (*dataproxy.UpdateCursorsResp, error) {
	return nil, notYet("UpdateCursors")
}

func (h *Handler) GetUserCursors(context.Context, *dataproxy.GetUserCursorsReq) (*dataproxy.GetUserCursorsResp, error) {
	return nil, notYet("GetUserCursors")
}

func (h *Handler) CreateGroup(context.Context, *dataproxy.CreateGroupReq) (*dataproxy.CreateGroupResp, error) {
	return nil, notYet("CreateGroup")
}

func (h *Handler) AddGroupMembers(context.Context, *dataproxy.GroupMembersReq) (*dataproxy.GroupMembersResp, error) {
	return nil, notYet("AddGroupMembers")
}

func (h *Handler) RemoveGroupMembers(context.Context, *dataproxy.GroupMembersReq) (*dataproxy.GroupMembersResp, error) {
	return nil, notYet("RemoveGroupMembers")
}

func (h *Handler) GetGroup(context.Context, *dataproxy.GetGroupReq) (*dataproxy.GetGroupResp, error) {
	return nil, notYet("GetGroup")
}

func (h *Handler) ListGroupMembers(context.Context, *dataproxy.ListGroupMembersReq) (*dataproxy.ListGroupMembersResp, error) {
	return nil, notYet("ListGroupMembers")
}

func (h *Handler) DissolveGroup(context.Context, *dataproxy.DissolveGroupReq) (*dataproxy.DissolveGroupResp, error) {
	return nil, notYet("DissolveGroup")
}

func (h *Handler) ListUserGroups(context.Context, *dataproxy.ListUserGroupsReq) (*dataproxy.ListUserGroupsResp, error) {
	return nil, notYet("ListUserGroups")
}

func (h *Handler) GetGroupRoutes(context.Context, *dataproxy.GetGroupRoutesReq) (*dataproxy.GetGroupRoutesResp, error) {
	return nil, notYet("GetGroupRoutes")
}
