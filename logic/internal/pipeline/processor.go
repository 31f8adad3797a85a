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
//     and the stored message is pushed again (devices drop repeats by
//     conversation and seq): for all logic knows, the first push never
//     left (see readDuplicates);
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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	dpclient "github.com/gochat-im/gochat/idl/kitex_gen/dataproxy/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
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
	// recallWindow is how long after sending a message may be recalled.
	recallWindow time.Duration
	cursors      cursorSaver
	// archive: every message pushed (new or pushed again as stored) also
	// goes to the task topic as an ARCHIVE task (SetArchive).
	archive bool
	// moderate: every message sent also becomes a MODERATE task.
	moderate bool
}

// DefaultRecallWindow is the recall window unless configured.
const DefaultRecallWindow = 2 * time.Minute

// NewProcessor returns a Processor.
func NewProcessor(dp dpclient.Client, uc *users.Cache, router *routing.Router, prod Producer, m *Metrics, log *slog.Logger) *Processor {
	return &Processor{dp: dp, users: uc, router: router, prod: prod, m: m, log: log, now: time.Now, recallWindow: DefaultRecallWindow}
}

// SetRecallWindow changes how long after sending a message may be recalled.
func (p *Processor) SetRecallWindow(d time.Duration) { p.recallWindow = d }

// SetArchive makes every stored message (and recall event) also an ARCHIVE
// task for the task service's archive job. A message pushed again as
// stored (a duplicate, or a batch replayed after logic stopped between
// storing and producing) is archived again: the archive is at least once,
// like delivery, and (conv_id, seq) names duplicates.
func (p *Processor) SetArchive(on bool) { p.archive = on }

// SetModerate makes every message sent (new, or pushed again as stored and
// not recalled since) also a MODERATE task for the task service's
// moderation job, which has it recalled (the Recall RPC) when its verdict
// says so. Like the archive, this is at least once: the job's verdicts and
// the operator's recall of a message are idempotent.
func (p *Processor) SetModerate(on bool) { p.moderate = on }

// item is one upstream record on its way through a batch.
type item struct {
	rec     *events.UpRecord
	errCode errcode.Code
	errMsg  string
	// group is the group id of a group conversation, "" for one-to-one.
	group string
	// peer is the other user of a one-to-one conversation.
	peer string
	// res is the store's answer for a send or recall.
	res *dataproxy.AppendResult_
	// stored is the stored message a duplicate names, read back to push it
	// again (nil when it could not be read).
	stored *common.Message
}

func (it *item) fail(c errcode.Code, format string, args ...any) {
	it.errCode, it.errMsg = c, fmt.Sprintf(format, args...)
}

// duplicate reports whether the store answered the item's send or recall
// as one stored before.
func (it *item) duplicate() bool { return it.errCode == 0 && it.res != nil && it.res.Duplicate }

// appends reports whether the record adds a message to its conversation.
func (it *item) appends() bool {
	k := it.rec.Kind
	return k == events.UpKind_SEND || k == events.UpKind_RECALL
}

// Process handles recs in order and returns when all their effects are in
// Kafka. It returns an error only when ctx ends first; failures of single
// records become error frames to their senders.
func (p *Processor) Process(ctx context.Context, recs []*events.UpRecord) error {
	prep, err := p.Prepare(ctx, recs)
	if err != nil {
		return err
	}
	receipts, err := p.SaveCursors(ctx, prep)
	if err != nil {
		return err
	}
	return retry(ctx, p.log, "produce", func() error {
		return p.prod.SendAll(ctx, append(prep.Msgs[:len(prep.Msgs):len(prep.Msgs)], receipts...))
	})
}

// Prepared is a batch ready to be produced.
type Prepared struct {
	// Msgs are the acks, error replies, pushes, typing indicators and
	// tasks, in an order that keeps each conversation's records in seq
	// order.
	Msgs []kafkax.Msg
	// reads are the read receipts to be: a receipt announces the read
	// cursor the store saved, so it is built from the answer of the cursor
	// save (SaveCursors) and goes out after it (a device told "read up to
	// 40" then finds read_seq 40 in its conversation list, read replicas'
	// lag aside).
	reads []readReceipt
	// cursors are the batch's cursor changes, for SaveCursors.
	cursors []*dataproxy.CursorUpdate
}

// Prepare does everything for recs except producing and saving cursors: it
// validates them, has sends and recalls stored, then looks up the routes of
// everyone involved and builds the outputs. The users' routes come with the
// append call (dataproxy reads them while it stores the batch: one round
// trip instead of two), or from a GetRoutes call when the batch stores
// nothing or that lookup failed. Each group's route set is read by a call
// of its own, once the append has returned: a member removed before the
// message was stored (the removal committed first) is then not in it, and
// is not pushed a message sent after they left. It returns an error only
// when ctx ends first.
func (p *Processor) Prepare(ctx context.Context, recs []*events.UpRecord) (*Prepared, error) {
	items := make([]*item, len(recs))
	for i, r := range recs {
		items[i] = &item{rec: r}
		p.validate(items[i])
	}
	if err := p.checkRecipients(ctx, items); err != nil {
		return nil, err
	}
	uids := uniq(needs(items))
	users, read, err := p.append(ctx, items, uids)
	if err != nil {
		return nil, err
	}
	// The group route sets are read after the append, beside the users'
	// GetRoutes call when one is needed.
	var (
		aud    audience
		audErr error
		groupW sync.WaitGroup
	)
	if groups := storedGroups(items); len(groups) > 0 {
		groupW.Go(func() { aud.groups, audErr = p.lookupGroups(ctx, groups) })
	}
	if !read && len(uids) > 0 {
		users, err = p.lookupUsers(ctx, uids)
	}
	groupW.Wait()
	if err != nil {
		return nil, err
	}
	if audErr != nil {
		return nil, audErr
	}
	aud.users = users
	if err := p.readDuplicates(ctx, items); err != nil {
		return nil, err
	}
	msgs, reads := p.outputs(ctx, items, aud)
	return &Prepared{Msgs: pack(msgs, p.router.Batches), reads: reads, cursors: cursorChanges(items)}, nil
}

func (p *Processor) validate(it *item) {
	r := it.rec
	if !ids.ValidUID(r.Sender) {
		it.fail(errcode.BadField, "invalid sender")
		return
	}
	if g, ok := strings.CutPrefix(r.ConvId, "g:"); ok && ids.ValidConv(r.ConvId) {
		it.group = g
	} else if peer, ok := ids.Peer(r.ConvId, r.Sender); ok {
		it.peer = peer
	} else {
		it.fail(errcode.ConvNotFound, "no conversation %q", r.ConvId)
		return
	}
	switch {
	case r.ByOperator && r.Kind != events.UpKind_RECALL:
		it.fail(errcode.BadField, "only a recall can be the operator's")
		return
	case r.ByOperator && r.ClientMsgId != protocol.OperatorRecallCMID(r.Seq):
		it.fail(errcode.BadField, "the operator's recall of message %d has cmid %s", r.Seq, protocol.OperatorRecallCMID(r.Seq))
		return
	case it.appends() && !r.ByOperator && protocol.ReservedCMID(r.ClientMsgId):
		it.fail(errcode.BadField, "cmids starting with %s are reserved", protocol.ReservedCMIDPrefix)
		return
	}
	switch r.Kind {
	case events.UpKind_SEND:
		if it.group == "" && r.To != it.peer {
			it.fail(errcode.BadField, "conversation id does not match the users")
		}
		if it.group != "" && r.To != "" {
			it.fail(errcode.BadField, "a group message has no recipient")
		}
	case events.UpKind_RECALL:
		if r.Seq <= 0 || r.ClientMsgId == "" {
			it.fail(errcode.BadField, "recall needs a cmid and the seq to recall")
		}
	case events.UpKind_READ, events.UpKind_DELIVERED:
		if r.Seq < 0 {
			it.fail(errcode.BadField, "negative seq")
		}
	case events.UpKind_TYPING:
		if it.group != "" {
			it.fail(errcode.BadField, "typing indicators are for one-to-one chats")
		}
	default:
		it.fail(errcode.UnknownType, "unknown record kind %v", r.Kind)
	}
}

// recallBody is the body of the event a recall leaves: empty for the
// sender's own, the reason for the operator's.
func recallBody(r *events.UpRecord) string {
	if r.ByOperator {
		return r.Body
	}
	return ""
}

// checkRecipients rejects one-to-one sends to users that do not exist.
// (Group senders are checked by the store, in the append transaction.)
func (p *Processor) checkRecipients(ctx context.Context, items []*item) error {
	var uids []string
	for _, it := range items {
		if it.errCode == 0 && it.rec.Kind == events.UpKind_SEND && it.group == "" {
			uids = append(uids, it.peer)
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
	var pe *permanentError
	switch {
	case errors.As(err, &pe):
		// Refused, which retrying now cannot mend (a configuration fault,
		// not the client's): these sends are answered with internal, which
		// clients retry later with the same cmid, and the rest of the batch
		// goes on.
		p.log.Error("user lookup refused", "err", err, "users", len(uids))
		for _, it := range items {
			if it.errCode == 0 && it.rec.Kind == events.UpKind_SEND && it.group == "" {
				it.fail(errcode.Internal, "recipient check failed: %s", pe.msg)
			}
		}
		return nil
	case err != nil:
		return err
	}
	for _, it := range items {
		if it.errCode == 0 && it.rec.Kind == events.UpKind_SEND && it.group == "" && !exists[it.peer] {
			it.fail(errcode.UserNotFound, "no user %q", it.peer)
		}
	}
	return nil
}

// append stores the batch's sends and recalls, in order, which also reads
// the routes of uids. read is false when it did not (nothing to store, the
// call was refused, or dataproxy's route lookup failed).
func (p *Processor) append(ctx context.Context, items []*item, uids []string) (users map[string][]*common.Route, read bool, err error) {
	var (
		reqs []*dataproxy.AppendItem
		sent []*item
	)
	now := p.now().UnixMilli()
	for _, it := range items {
		if it.errCode != 0 || !it.appends() {
			continue
		}
		r := it.rec
		ai := &dataproxy.AppendItem{
			ConvId: r.ConvId, Sender: r.Sender, Recipient: it.peer, ClientMsgId: r.ClientMsgId,
			ContentType: r.ContentType, Body: r.Body, CreatedAtMs: now,
		}
		if r.Kind == events.UpKind_RECALL {
			ai.ContentType, ai.Body = protocol.ContentTypeRecall, recallBody(r)
			ai.RecallSeq, ai.RecallWindowMs, ai.ByOperator = r.Seq, p.recallWindowMs(r, now), r.ByOperator
		}
		reqs = append(reqs, ai)
		sent = append(sent, it)
	}
	if len(sent) == 0 {
		return nil, false, nil
	}
	return p.appendCall(ctx, sent, reqs, uids)
}

// recallWindowMs is the window dataproxy judges a recall by (now is the
// recall's created_at). dataproxy measures it back from the recall's
// created_at, which is when logic stores it; a user's recall is judged by
// when the user sent it, so the window is widened by the time the record
// waited between the gateway (ReceivedAtMs) and now: a backlog, or a
// replay after a crash, does not make a recall that was in time too late.
// The widening is never more than the time that passed: a record without
// ReceivedAtMs is not widened, and one stamped later than now (a gateway
// clock ahead of logic's) counts as received now. A negative configured
// window counts as 0. The operator's recall has no window (dataproxy does
// not check it for them): 0.
func (p *Processor) recallWindowMs(r *events.UpRecord, now int64) int64 {
	if r.ByOperator {
		return 0
	}
	w := max(p.recallWindow.Milliseconds(), 0)
	if r.ReceivedAtMs > 0 && r.ReceivedAtMs < now {
		w += now - r.ReceivedAtMs
	}
	return w
}

// splitsOnRefusal reports whether dataproxy refusing a whole
// AppendMessages call with code is about the call, not its items: too
// many bytes (TooLarge: -max-request-bytes) or too many items (BadRequest:
// -max-batch). Smaller calls may then pass.
func splitsOnRefusal(code errcode.Code) bool {
	return code == errcode.TooLarge || code == errcode.BadRequest
}

// appendCall stores sent (reqs are their items, in order) with one call,
// which also reads the routes of uids (none when empty). A call dataproxy
// refuses whole for what it carries together (splitsOnRefusal) is split in
// halves, down to single items, sent one after the other in batch order so
// each conversation keeps its order; the routes ride on the last part. An
// item refused even alone gets the refusal as its answer, and so does every
// item of a call refused whole for any other reason: nothing of it was
// stored. read is false when the routes were not read (the caller looks
// them up itself).
func (p *Processor) appendCall(ctx context.Context, sent []*item, reqs []*dataproxy.AppendItem, uids []string) (users map[string][]*common.Route, read bool, err error) {
	req := dataproxy.AppendMessagesReq{Items: reqs, RouteUids: uids}
	var resp *dataproxy.AppendMessagesResp
	err = retry(ctx, p.log, "append messages", func() (err error) {
		resp, err = p.dp.AppendMessages(ctx, &req)
		if err == nil && len(resp.Results) != len(req.Items) {
			return errcode.New(errcode.Internal, "dataproxy returned %d results for %d items", len(resp.Results), len(req.Items))
		}
		return err
	})
	var pe *permanentError
	switch {
	case errors.As(err, &pe) && len(sent) > 1 && splitsOnRefusal(pe.code):
		p.log.Warn("append refused whole; sent again in halves", "err", err, "items", len(sent))
		p.m.appendSplits.Inc()
		half := len(sent) / 2
		if _, _, err := p.appendCall(ctx, sent[:half], reqs[:half], nil); err != nil {
			return nil, false, err
		}
		return p.appendCall(ctx, sent[half:], reqs[half:], uids)
	case errors.As(err, &pe):
		// The whole call was refused: tell each sender; nothing was stored.
		p.log.Error("append refused", "err", err, "items", len(sent))
		for _, it := range sent {
			it.fail(pe.code, "%s", pe.msg)
		}
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	for i, it := range sent {
		res := resp.Results[i]
		if res.ErrorCode != 0 {
			it.fail(errcode.Code(res.ErrorCode), "%s", res.ErrorMessage)
			continue
		}
		it.res = res
	}
	if !resp.RoutesRead || len(uids) == 0 {
		return nil, false, nil
	}
	return p.router.Live(resp.Routes), true, nil
}

// preview is the start of a body an offline-push task carries.
func preview(s string) string { return protocol.CutUTF8(s, previewLen) }

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

// readDuplicates reads back the stored message of every send or recall the
// store answered as a duplicate, so that it is pushed again. A duplicate is
// a client's retransmission, or this batch replayed after logic stopped
// between storing it and producing its pushes: then nobody has it yet, and
// pushing the stored copy (never the retransmitted body, which a client
// may have changed) is what delivers it. Devices drop repeats by (conv,
// seq). A message that cannot be read is only acknowledged; its
// recipients learn of it from their inbox cursor (PROTOCOL.md, missed
// pushes). It returns an error only when ctx ends first.
func (p *Processor) readDuplicates(ctx context.Context, items []*item) error {
	if !slices.ContainsFunc(items, (*item).duplicate) {
		return nil
	}
	type convSeq struct {
		conv string
		seq  int64
	}
	fresh := map[convSeq]bool{} // stored by this batch: pushed by it
	for _, it := range items {
		if it.errCode == 0 && it.res != nil && !it.duplicate() {
			fresh[convSeq{it.rec.ConvId, it.res.Seq}] = true
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, it := range items {
		if !it.duplicate() || fresh[convSeq{it.rec.ConvId, it.res.Seq}] {
			continue
		}
		r := it.rec
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var resp *dataproxy.GetMessageResp
			err := retry(ctx, p.log, "read duplicate", func() (err error) {
				resp, err = p.dp.GetMessage(ctx, &dataproxy.GetMessageReq{ConvId: r.ConvId, Sender: r.Sender, ClientMsgId: r.ClientMsgId})
				return err
			})
			switch {
			case err != nil && ctx.Err() != nil:
			case err != nil || !resp.Found || resp.Message == nil || resp.Message.Seq != it.res.Seq:
				p.log.Warn("duplicate not read back; acknowledged without a push", "conv", r.ConvId, "seq", it.res.Seq, "err", err)
			default:
				it.stored = resp.Message
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
