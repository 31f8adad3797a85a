package handler

import (
	"context"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
)

// GetMessage implements dataproxy.DataProxy.
func (h *Handler) GetMessage(ctx context.Context, req *dataproxy.GetMessageReq) (resp *dataproxy.GetMessageResp, err error) {
	defer h.m.observe("GetMessage", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	m, ok, err := h.st.GetMessage(ctx, req.ConvId, req.Sender, req.ClientMsgId)
	if err != nil {
		return nil, h.fail("GetMessage", err)
	}
	if !ok {
		return &dataproxy.GetMessageResp{}, nil
	}
	return &dataproxy.GetMessageResp{Found: true, Message: message(&m)}, nil
}

// UpdateCursors implements dataproxy.DataProxy.
func (h *Handler) UpdateCursors(ctx context.Context, req *dataproxy.UpdateCursorsReq) (resp *dataproxy.UpdateCursorsResp, err error) {
	defer h.m.observe("UpdateCursors", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("updates", len(req.Updates)); err != nil {
		return nil, err
	}
	got, err := h.st.UpdateCursors(ctx, cursorsIn(req.Updates))
	if err != nil {
		return nil, h.fail("UpdateCursors", err)
	}
	return &dataproxy.UpdateCursorsResp{Cursors: cursorsOut(got)}, nil
}

// GetUserCursors implements dataproxy.DataProxy: the inbox cursors, from
// Redis (rebuilt from SQL where missing).
func (h *Handler) GetUserCursors(ctx context.Context, req *dataproxy.GetUserCursorsReq) (resp *dataproxy.GetUserCursorsResp, err error) {
	defer h.m.observe("GetUserCursors", time.Now(), &err)
	if req == nil {
		return nil, errNoRequest()
	}
	if err := h.checkCount("uids", len(req.Uids)); err != nil {
		return nil, err
	}
	got, err := h.ib.Cursors(ctx, req.Uids)
	if err != nil {
		return nil, h.fail("GetUserCursors", err)
	}
	return &dataproxy.GetUserCursorsResp{Cursors: got}, nil
}
