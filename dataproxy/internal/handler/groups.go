package handler

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
)

// Group calls. The store commits the change; then the Redis caches follow:
// the members' group and conversation sets are forgotten (rebuilt from SQL
// on their next use) and their routes copied into, or deleted from, the
// group's route set. Those updates cannot fail the call (see package
// repair).

// CreateGroup implements dataproxy.DataProxy.
func (h *Handler) CreateGroup(ctx context.Context, req *dataproxy.CreateGroupReq) (resp *dataproxy.CreateGroupResp, err error) {
	defer h.m.observe("CreateGroup", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("members", len(req.Members)); err != nil {
		return nil, err
	}
	g, err := h.st.CreateGroup(ctx, store.Group{ID: req.GroupId, Name: req.Name, Owner: req.Owner, CreatedAtMs: req.CreatedAtMs}, req.Members)
	if err != nil {
		return nil, h.fail("CreateGroup", err)
	}
	h.joined(ctx, g.ID, uniq(append([]string{g.Owner}, req.Members...)))
	return &dataproxy.CreateGroupResp{Group: groupOut(g)}, nil
}

// AddGroupMembers implements dataproxy.DataProxy.
func (h *Handler) AddGroupMembers(ctx context.Context, req *dataproxy.GroupMembersReq) (resp *dataproxy.GroupMembersResp, err error) {
	defer h.m.observe("AddGroupMembers", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("uids", len(req.Uids)); err != nil {
		return nil, err
	}
	n, g, err := h.st.AddGroupMembers(ctx, req.GroupId, req.Uids, req.AtMs)
	if err != nil {
		var ac *store.AfterCommitError
		if errors.As(err, &ac) {
			// The members are in: Redis must follow even though the call
			// fails (the caller's retry completes the rest).
			h.joined(ctx, req.GroupId, uniq(req.Uids))
		}
		return nil, h.fail("AddGroupMembers", err)
	}
	h.joined(ctx, g.ID, uniq(req.Uids))
	return &dataproxy.GroupMembersResp{Changed: int32(n), Group: groupOut(g)}, nil
}

// joined updates Redis for uids, members of group since a committed change.
// A removal committed after that change may have updated Redis before this
// does; so the membership is read again afterwards, and whoever is no
// longer a member is taken out of the route set again.
func (h *Handler) joined(ctx context.Context, group string, uids []string) {
	ctx, cancel := detached(ctx, redisTimeout)
	defer cancel()
	if err := h.rt.JoinGroup(ctx, group, uids); err != nil {
		h.log.Warn("group route set not updated; its keys are queued for repair", "group", group, "err", err)
	}
	if err := h.ib.Forget(ctx, uids); err != nil {
		h.log.Warn("conversation sets not forgotten; queued for repair", "group", group, "err", err)
	}
	in, ok := h.membersAgain(ctx, group, uids, "join")
	if !ok {
		return
	}
	if gone := slices.DeleteFunc(slices.Clone(uids), func(u string) bool { return slices.Contains(in, u) }); len(gone) > 0 {
		h.left(ctx, group, gone)
	}
}

// RemoveGroupMembers implements dataproxy.DataProxy.
func (h *Handler) RemoveGroupMembers(ctx context.Context, req *dataproxy.GroupMembersReq) (resp *dataproxy.GroupMembersResp, err error) {
	defer h.m.observe("RemoveGroupMembers", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("uids", len(req.Uids)); err != nil {
		return nil, err
	}
	n, g, err := h.st.RemoveGroupMembers(ctx, req.GroupId, req.Uids)
	if err != nil {
		return nil, h.fail("RemoveGroupMembers", err)
	}
	ctx, cancel := detached(ctx, redisTimeout)
	defer cancel()
	uids := uniq(req.Uids)
	h.left(ctx, g.ID, uids)
	// An add committed after this removal may have updated Redis before
	// this did: whoever is a member again gets their routes back (joined
	// reads the membership again in turn, against a later removal).
	if in, ok := h.membersAgain(ctx, g.ID, uids, "removal"); ok && len(in) > 0 {
		h.joined(ctx, g.ID, in)
	}
	return &dataproxy.GroupMembersResp{Changed: int32(n), Group: groupOut(g)}, nil
}

// membersAgain reads which of uids are members of group, after Redis was
// updated for a change (a join or removal) that another may have raced
// with. If it cannot, a racing change may have left the group's route set
// wrong: the whole set is queued for deletion (the members' route
// refreshes rebuild it) and ok is false.
func (h *Handler) membersAgain(ctx context.Context, group string, uids []string, change string) (in []string, ok bool) {
	in, err := h.st.MembersAmong(ctx, group, uids)
	if err != nil {
		h.log.Warn("membership not read again after a "+change+"; the group's route set is queued for repair", "group", group, "err", err)
		h.rt.RepairGroup(group)
		return nil, false
	}
	return in, true
}

// left updates Redis for uids, no longer members of group.
func (h *Handler) left(ctx context.Context, group string, uids []string) {
	if err := h.rt.LeaveGroup(ctx, group, uids); err != nil {
		h.log.Warn("group route set not updated; its keys are queued for repair", "group", group, "err", err)
	}
	if err := h.ib.Forget(ctx, uids); err != nil {
		h.log.Warn("conversation sets not forgotten; queued for repair", "group", group, "err", err)
	}
}

// dissolveTimeout bounds the Redis follow-up of dissolving a group.
const dissolveTimeout = 30 * time.Second

// DissolveGroup implements dataproxy.DataProxy.
func (h *Handler) DissolveGroup(ctx context.Context, req *dataproxy.DissolveGroupReq) (resp *dataproxy.DissolveGroupResp, err error) {
	defer h.m.observe("DissolveGroup", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.st.DissolveGroup(ctx, req.GroupId, req.AtMs); err != nil {
		return nil, h.fail("DissolveGroup", err)
	}
	// The group takes no more messages: its members' group sets are
	// forgotten so that route refreshes stop writing into its route set,
	// and then the route set goes (a refresh reads a user's group set and
	// writes the route sets in one script, and a group set filled again
	// from SQL leaves dissolved groups out, so nothing writes into it
	// after that). Their conversation sets keep it (its history still
	// counts in their inbox cursors). Paging through 100,000 members takes
	// more than one Redis timeout: the whole follow-up has its own budget.
	ctx, cancel := detached(ctx, dissolveTimeout)
	defer cancel()
	for after := ""; ; {
		page, more, err := h.st.ListGroupMembers(ctx, req.GroupId, after, store.MaxMemberLimit)
		if err != nil {
			h.log.Warn("members of a dissolved group not read; their group sets expire on their own", "group", req.GroupId, "err", err)
			break
		}
		uids := make([]string, len(page))
		for i, m := range page {
			uids[i] = m.UID
		}
		if err := h.rt.ForgetUserGroups(ctx, uids); err != nil {
			h.log.Warn("group sets not forgotten; queued for repair", "group", req.GroupId, "err", err)
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].UID
	}
	if err := h.rt.DropGroup(ctx, req.GroupId); err != nil {
		h.log.Warn("route set of a dissolved group not deleted; queued for repair", "group", req.GroupId, "err", err)
	}
	return &dataproxy.DissolveGroupResp{}, nil
}

// GetGroup implements dataproxy.DataProxy.
func (h *Handler) GetGroup(ctx context.Context, req *dataproxy.GetGroupReq) (resp *dataproxy.GetGroupResp, err error) {
	defer h.m.observe("GetGroup", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	g, err := h.st.GetGroup(ctx, req.GroupId)
	if err != nil {
		return nil, h.fail("GetGroup", err)
	}
	return &dataproxy.GetGroupResp{Group: groupOut(g)}, nil
}

// ListGroupMembers implements dataproxy.DataProxy.
func (h *Handler) ListGroupMembers(ctx context.Context, req *dataproxy.ListGroupMembersReq) (resp *dataproxy.ListGroupMembersResp, err error) {
	defer h.m.observe("ListGroupMembers", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	ms, more, err := h.st.ListGroupMembers(ctx, req.GroupId, req.AfterUid, int(req.Limit))
	if err != nil {
		return nil, h.fail("ListGroupMembers", err)
	}
	return &dataproxy.ListGroupMembersResp{Members: membersOut(ms), HasMore: more}, nil
}

// ListUserGroups implements dataproxy.DataProxy.
func (h *Handler) ListUserGroups(ctx context.Context, req *dataproxy.ListUserGroupsReq) (resp *dataproxy.ListUserGroupsResp, err error) {
	defer h.m.observe("ListUserGroups", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	gs, err := h.st.ListUserGroups(ctx, req.Uid)
	if err != nil {
		return nil, h.fail("ListUserGroups", err)
	}
	return &dataproxy.ListUserGroupsResp{Groups: groupsOut(gs)}, nil
}

// GetGroupRoutes implements dataproxy.DataProxy: one read of the group's
// route set, whatever the group's size.
func (h *Handler) GetGroupRoutes(ctx context.Context, req *dataproxy.GetGroupRoutesReq) (resp *dataproxy.GetGroupRoutesResp, err error) {
	defer h.m.observe("GetGroupRoutes", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if !ids.ValidConv("g:" + req.GroupId) {
		return nil, errcode.Biz(errcode.BadField, "group id %q is not valid", req.GroupId)
	}
	rs, err := h.rt.GetGroupRoutes(ctx, req.GroupId)
	if err != nil {
		return nil, h.fail("GetGroupRoutes", err)
	}
	return &dataproxy.GetGroupRoutesResp{Routes: routesOut(rs)}, nil
}

// uniq drops repeats and malformed uids, keeping the order.
func uniq(uids []string) []string {
	out := make([]string, 0, len(uids))
	seen := make(map[string]bool, len(uids))
	for _, u := range uids {
		if !seen[u] && ids.ValidUID(u) {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}
