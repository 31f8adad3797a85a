// Package pipeline is logic's send path: it consumes client sends from the
// upstream topic, persists them through dataproxy, and produces acks,
// pushes and offline-push tasks.
//
// Order and durability rules, which the rest of GoChat relies on:
//   - records of one conversation share an upstream partition (keyed by
//     conversation id) and are handled in partition order, one batch at a
//     time, so their sequence numbers follow send order;
//   - a sender is acknowledged only after dataproxy has committed the
//     message; a retransmitted client message id gets the original ack back
//     and its recipients get no second copy;
//   - pushes of one conversation go to the same downstream partition of a
//     gateway in seq order;
//   - an upstream offset is stored only after every ack, push and task the
//     record gives rise to has been acknowledged by Kafka. A crash in
//     between replays the record; dataproxy's dedupe makes that harmless
//     and clients drop pushes they have by (conversation, seq).
//
// Processor.Process is called by one goroutine per consumer; it is not safe
// for concurrent use by several.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// Producer sends records and waits until Kafka has them all.
type Producer interface {
	SendAll(ctx context.Context, msgs []kafkax.Msg) error
}

// previewLen is how much of a body an offline-push task carries.
const previewLen = 100

// Processor handles batches of upstream records.
type Processor struct {
	dp     dpclient.Client
	users  *users.Cache
	router *routing.Router
	prod   Producer
	log    *slog.Logger
	m      *Metrics
	now    func() time.Time
}

// NewProcessor returns a Processor.
func NewProcessor(dp dpclient.Client, uc *users.Cache, router *routing.Router, prod Producer, m *Metrics, log *slog.Logger) *Processor {
	return &Processor{dp: dp, users: uc, router: router, prod: prod, m: m, log: log, now: time.Now}
}

// item is one upstream record on its way through a batch.
type item struct {
	rec     *events.UpRecord
	errCode errcode.Code
	errMsg  string
	res     *dataproxy.AppendResult_
}

// Process handles recs in order and returns when all their effects are in
// Kafka. It returns an error only when ctx ends first; failures of single
// records become error frames to their senders.
func (p *Processor) Process(ctx context.Context, recs []*events.UpRecord) error {
	msgs, err := p.Prepare(ctx, recs)
	if err != nil {
		return err
	}
	return retry(ctx, p.log, "produce", func() error {
		return p.prod.SendAll(ctx, msgs)
	})
}

// Prepare does everything for recs except producing: it validates them,
// has the valid ones stored, and returns the acks, error replies, pushes
// and tasks to produce, in an order that keeps each conversation's records
// in seq order. It returns an error only when ctx ends first.
func (p *Processor) Prepare(ctx context.Context, recs []*events.UpRecord) ([]kafkax.Msg, error) {
	items := make([]*item, len(recs))
	for i, r := range recs {
		items[i] = &item{rec: r}
		p.validate(items[i])
	}
	if err := p.checkRecipients(ctx, items); err != nil {
		return nil, err
	}
	if err := p.append(ctx, items); err != nil {
		return nil, err
	}
	return p.outputs(ctx, items)
}

func (p *Processor) validate(it *item) {
	r := it.rec
	switch {
	case r.Kind != events.UpKind_SEND:
		it.errCode, it.errMsg = errcode.UnknownType, fmt.Sprintf("unknown record kind %v", r.Kind)
	case !ids.ValidUID(r.Sender) || !ids.ValidUID(r.To):
		it.errCode, it.errMsg = errcode.BadField, "invalid sender or recipient"
	case r.ConvId != ids.P2P(r.Sender, r.To):
		it.errCode, it.errMsg = errcode.BadField, "conversation id does not match the users"
	}
}

func (p *Processor) checkRecipients(ctx context.Context, items []*item) error {
	var uids []string
	for _, it := range items {
		if it.errCode == 0 {
			uids = append(uids, it.rec.To)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	var exists map[string]bool
	err := retry(ctx, p.log, "get users", func() (err error) {
		exists, err = p.users.Existing(ctx, uids)
		return err
	})
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.errCode == 0 && !exists[it.rec.To] {
			it.errCode, it.errMsg = errcode.UserNotFound, fmt.Sprintf("no user %q", it.rec.To)
		}
	}
	return nil
}

func (p *Processor) append(ctx context.Context, items []*item) error {
	var (
		req  dataproxy.AppendMessagesReq
		sent []*item
	)
	now := p.now().UnixMilli()
	for _, it := range items {
		if it.errCode != 0 {
			continue
		}
		r := it.rec
		req.Items = append(req.Items, &dataproxy.AppendItem{
			ConvId: r.ConvId, Sender: r.Sender, Recipient: r.To, ClientMsgId: r.ClientMsgId,
			ContentType: r.ContentType, Body: r.Body, CreatedAtMs: now,
		})
		sent = append(sent, it)
	}
	if len(sent) == 0 {
		return nil
	}
	var resp *dataproxy.AppendMessagesResp
	err := retry(ctx, p.log, "append messages", func() (err error) {
		resp, err = p.dp.AppendMessages(ctx, &req)
		if err == nil && len(resp.Results) != len(req.Items) {
			return errcode.New(errcode.Internal, "dataproxy returned %d results for %d items", len(resp.Results), len(req.Items))
		}
		return err
	})
	var pe *permanentError
	switch {
	case errors.As(err, &pe):
		// The whole call was refused: tell each sender; nothing was stored.
		p.log.Error("append refused", "err", err, "items", len(sent))
		for _, it := range sent {
			it.errCode, it.errMsg = pe.code, pe.msg
		}
		return nil
	case err != nil:
		return err
	}
	for i, it := range sent {
		res := resp.Results[i]
		if res.ErrorCode != 0 {
			it.errCode, it.errMsg = errcode.Code(res.ErrorCode), res.ErrorMessage
			continue
		}
		it.res = res
	}
	return nil
}

// outputs builds the acks, error replies, pushes and tasks of a batch.
func (p *Processor) outputs(ctx context.Context, items []*item) ([]kafkax.Msg, error) {
	// Who do we push to: recipients of new messages, and the senders'
	// other devices (each device of a user sees the whole conversation).
	var uids []string
	for _, it := range items {
		if it.res != nil && !it.res.Duplicate {
			uids = append(uids, it.rec.To, it.rec.Sender)
		}
	}
	var routes map[string][]*common.Route
	if len(uids) > 0 {
		err := retry(ctx, p.log, "get routes", func() (err error) {
			routes, err = p.router.Lookup(ctx, uniq(uids))
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	var msgs []kafkax.Msg
	down := func(gw, key string, rec *events.DownRecord) {
		msgs = append(msgs, kafkax.Msg{Topic: kafkax.DownTopic(gw), Key: []byte(key), Value: kafkax.Encode(rec)})
	}
	for _, it := range items {
		r := it.rec
		senderGW := p.router.SenderAlive(ctx, r.GatewayId)
		self := []*events.Target{{Uid: r.Sender, ConnId: r.ConnId}}
		if it.errCode != 0 {
			p.m.rejected.WithLabelValues(it.errCode.String()).Inc()
			if senderGW {
				down(r.GatewayId, r.ConvId, &events.DownRecord{Kind: events.DownKind_ERROR, Targets: self,
					Error: &events.ErrorEvent{Code: int32(it.errCode), Message: it.errMsg, ClientMsgId: r.ClientMsgId}})
			}
			continue
		}
		res := it.res
		if senderGW {
			down(r.GatewayId, r.ConvId, &events.DownRecord{Kind: events.DownKind_ACK, Targets: self,
				Ack: &events.Ack{ClientMsgId: r.ClientMsgId, ConvId: r.ConvId, Seq: res.Seq, CreatedAtMs: res.CreatedAtMs, Duplicate: res.Duplicate}})
		}
		if res.Duplicate {
			p.m.duplicates.Inc()
			continue
		}
		p.m.persisted.Inc()
		if r.ReceivedAtMs > 0 {
			p.m.persistLatency.Observe(float64(p.now().UnixMilli()-r.ReceivedAtMs) / 1000)
		}
		msg := &common.Message{ConvId: r.ConvId, Seq: res.Seq, Sender: r.Sender, Recipient: r.To,
			ClientMsgId: r.ClientMsgId, ContentType: r.ContentType, Body: r.Body, CreatedAtMs: res.CreatedAtMs}
		byGW := map[string][]*events.Target{}
		var order []string
		add := func(rt *common.Route) {
			if _, ok := byGW[rt.GatewayId]; !ok {
				order = append(order, rt.GatewayId)
			}
			byGW[rt.GatewayId] = append(byGW[rt.GatewayId], &events.Target{Uid: rt.Uid, ConnId: rt.ConnId})
		}
		for _, rt := range routes[r.To] {
			add(rt)
		}
		if r.To != r.Sender {
			for _, rt := range routes[r.Sender] {
				if rt.GatewayId != r.GatewayId || rt.ConnId != r.ConnId {
					add(rt)
				}
			}
		}
		for _, gw := range order {
			down(gw, r.ConvId, &events.DownRecord{Kind: events.DownKind_PUSH, Targets: byGW[gw], Message: msg})
		}
		if len(routes[r.To]) == 0 {
			p.m.offline.Inc()
			msgs = append(msgs, kafkax.Msg{Topic: kafkax.TopicTask, Key: []byte(r.To), Value: kafkax.Encode(&events.TaskRecord{
				Kind: events.TaskKind_OFFLINE_PUSH,
				OfflinePush: &events.OfflinePush{Uid: r.To, ConvId: r.ConvId, Seq: res.Seq, Sender: r.Sender,
					ContentType: r.ContentType, Preview: preview(r.Body), CreatedAtMs: res.CreatedAtMs},
			})})
		}
	}
	return msgs, nil
}

func preview(s string) string {
	if len(s) <= previewLen {
		return s
	}
	s = s[:previewLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func uniq(s []string) []string {
	seen := make(map[string]struct{}, len(s))
	out := make([]string, 0, len(s))
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
