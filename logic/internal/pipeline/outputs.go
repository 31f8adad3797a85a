package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// audience is where a batch's records go: the live routes of the users
// involved, and of each group with a new message.
type audience struct {
	users  map[string][]*common.Route
	groups map[string][]*common.Route
}

// needs lists whose routes a batch needs: the users of its records (a
// group's members are found by the group's route set, see storedGroups).
// It is computed before the append, so duplicates are not known yet: a
// retransmission costs a lookup that goes unused.
func needs(items []*item) (uids []string) {
	for _, it := range items {
		if it.errCode != 0 {
			continue
		}
		r := it.rec
		switch {
		case it.appends():
			if it.group == "" {
				uids = append(uids, it.peer)
			}
			uids = append(uids, r.Sender)
		case r.Kind == events.UpKind_READ:
			uids = append(uids, r.Sender)
			if it.peer != "" {
				uids = append(uids, it.peer)
			}
		case r.Kind == events.UpKind_TYPING:
			uids = append(uids, it.peer)
		}
	}
	return uids
}

// storedGroups lists the groups with a message the append stored (or found
// stored: a duplicate is pushed again), whose route sets the batch's pushes
// need; a group's value is true when one of those is the operator's recall,
// which a dissolved group takes too (see lookupGroups). It is called once
// the append has returned.
func storedGroups(items []*item) map[string]bool {
	groups := map[string]bool{}
	for _, it := range items {
		if it.errCode == 0 && it.res != nil && it.group != "" {
			groups[it.group] = groups[it.group] || it.rec.ByOperator
		}
	}
	return groups
}

// lookupUsers finds the routes of uids. A refused lookup, which retrying
// cannot mend, leaves the batch without pushes (it is stored and acked;
// recipients learn of it from their inbox cursor) rather than stop the
// partition; it returns an error only when ctx ends first.
func (p *Processor) lookupUsers(ctx context.Context, uids []string) (users map[string][]*common.Route, err error) {
	err = retry(ctx, p.log, "get routes", func() (err error) {
		users, err = p.router.Lookup(ctx, uids)
		return err
	})
	var pe *permanentError
	if errors.As(err, &pe) {
		p.log.Error("route lookup refused; batch sent without pushes", "err", err, "users", len(uids))
		p.m.routeLookupRefused.Inc()
		return map[string][]*common.Route{}, nil
	}
	return users, err
}

// lookupGroups reads the route set of each group with one call whatever
// its size, all side by side. A dissolved group has none (its members'
// routes are no longer added to one), so for a group with an operator's
// recall (groups[g] true) an empty route set is followed by
// dissolvedRoutes.
func (p *Processor) lookupGroups(ctx context.Context, groups map[string]bool) (map[string][]*common.Route, error) {
	out := map[string][]*common.Route{}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *dataproxy.GetGroupRoutesResp
			err := retry(ctx, p.log, "get group routes", func() (err error) {
				resp, err = p.dp.GetGroupRoutes(ctx, &dataproxy.GetGroupRoutesReq{GroupId: g})
				return err
			})
			if _, gone := err.(*permanentError); gone {
				return // the group is gone (or unknown): no one to push to
			}
			if err != nil {
				fail(err)
				return
			}
			routes := resp.Routes
			if len(routes) == 0 && groups[g] {
				if routes, err = p.dissolvedRoutes(ctx, g); err != nil {
					fail(err)
					return
				}
			}
			var live []*common.Route
			for _, rt := range routes {
				if p.router.Alive(rt.GatewayId) {
					live = append(live, rt)
				}
			}
			mu.Lock()
			out[g] = live
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, firstErr
}

// dissolvedRoutes returns the routes of group g's members if g is
// dissolved, for an operator's recall there: members are listed a page at
// a time and their routes looked up like one-to-one recipients'. That
// costs a lookup per member, but happens only when moderation takes down a
// message of a dissolved group. An active group, whose empty route set
// means no member is online, gets nil.
func (p *Processor) dissolvedRoutes(ctx context.Context, g string) ([]*common.Route, error) {
	var info *dataproxy.GetGroupResp
	err := retry(ctx, p.log, "get group", func() (err error) {
		info, err = p.dp.GetGroup(ctx, &dataproxy.GetGroupReq{GroupId: g})
		return err
	})
	if _, gone := err.(*permanentError); gone {
		return nil, nil
	}
	if err != nil || info.Group == nil || !info.Group.Dissolved {
		return nil, err
	}
	var routes []*common.Route
	for after := ""; ; {
		var page *dataproxy.ListGroupMembersResp
		err := retry(ctx, p.log, "list group members", func() (err error) {
			page, err = p.dp.ListGroupMembers(ctx, &dataproxy.ListGroupMembersReq{GroupId: g, AfterUid: after, Limit: memberPage})
			return err
		})
		if _, gone := err.(*permanentError); gone {
			return routes, nil
		}
		if err != nil {
			return nil, err
		}
		uids := make([]string, 0, len(page.Members))
		for _, m := range page.Members {
			uids = append(uids, m.Uid)
		}
		users, err := p.lookupUsers(ctx, uids)
		if err != nil {
			return nil, err
		}
		for _, u := range uids {
			routes = append(routes, users[u]...)
		}
		if !page.HasMore || len(uids) == 0 {
			return routes, nil
		}
		after = uids[len(uids)-1]
	}
}

// memberPage is the members dissolvedRoutes lists per call (dataproxy's
// most).
const memberPage = 1000

// targets groups routes by gateway, in first-seen order, leaving out the
// connection the record came from.
type targets struct {
	by    map[string][]*events.Target
	order []string
}

func newTargets() *targets { return &targets{by: map[string][]*events.Target{}} }

func (t *targets) add(from *events.UpRecord, routes ...*common.Route) {
	for _, rt := range routes {
		if rt.GatewayId == from.GatewayId && rt.ConnId == from.ConnId && rt.Uid == from.Sender {
			continue
		}
		t.put(rt.GatewayId, &events.Target{Uid: rt.Uid, ConnId: rt.ConnId})
	}
}

// put adds tg on gateway gw.
func (t *targets) put(gw string, tg *events.Target) {
	if _, ok := t.by[gw]; !ok {
		t.order = append(t.order, gw)
	}
	t.by[gw] = append(t.by[gw], tg)
}

// readReceipt is a read receipt to be sent once the cursor it announces is
// saved (see receipts).
type readReceipt struct {
	key cursorKey // the reader and the conversation
	// to is where it goes: the reader's other devices, and the other user
	// of a one-to-one chat.
	to *targets
}

// outputs builds the acks, error replies, pushes, typing indicators and
// tasks of a batch (msgs), in record order, and its read receipts to be
// (reads), which receipts completes once the cursors are saved.
func (p *Processor) outputs(ctx context.Context, items []*item, aud audience) (msgs []kafkax.Msg, reads []readReceipt) {
	down := func(gw, key string, rec *events.DownRecord) {
		msgs = append(msgs, kafkax.Msg{Topic: kafkax.DownTopic(gw), Key: []byte(key), Value: kafkax.Encode(rec)})
	}
	fanout := func(key string, t *targets, rec *events.DownRecord) { msgs = fanoutDown(msgs, key, t, rec) }
	for _, it := range items {
		r := it.rec
		senderGW := p.router.SenderAlive(ctx, r.GatewayId)
		self := []*events.Target{{Uid: r.Sender, ConnId: r.ConnId}}
		if it.errCode != 0 {
			p.m.rejected.WithLabelValues(it.errCode.String()).Inc()
			if senderGW && r.Kind != events.UpKind_TYPING {
				down(r.GatewayId, r.ConvId, &events.DownRecord{Kind: events.DownKind_ERROR, Targets: self,
					Error: &events.ErrorEvent{Code: int32(it.errCode), Message: it.errMsg, ClientMsgId: r.ClientMsgId}})
			}
			continue
		}
		switch r.Kind {
		case events.UpKind_SEND, events.UpKind_RECALL:
			msg, task, ok := p.messageOutputs(it, aud, senderGW, self, down, fanout)
			if ok {
				msgs = append(msgs, task)
			}
			if p.archive {
				if a := p.archiveTask(it, msg); a.Value != nil {
					msgs = append(msgs, a)
				}
			}
			if p.moderate && r.Kind == events.UpKind_SEND && msg != nil && !msg.Recalled {
				p.m.moderation.Inc()
				msgs = append(msgs, kafkax.Msg{Topic: kafkax.TopicTask, Key: []byte(msg.ConvId),
					Value: kafkax.Encode(&events.TaskRecord{Kind: events.TaskKind_MODERATE, Moderate: msg})})
			}
		case events.UpKind_READ:
			// The reader's other devices, and the other side of a
			// one-to-one chat (read receipts are not sent to groups).
			t := newTargets()
			t.add(r, aud.users[r.Sender]...)
			if it.peer != "" {
				t.add(r, aud.users[it.peer]...)
			}
			reads = append(reads, readReceipt{key: cursorKey{r.Sender, r.ConvId}, to: t})
		case events.UpKind_TYPING:
			t := newTargets()
			t.add(r, aud.users[it.peer]...)
			fanout(r.ConvId, t, &events.DownRecord{Kind: events.DownKind_FRAME,
				Frame: frame(protocol.Typing{Type: protocol.TypeTyping, Conv: r.ConvId, From: r.Sender})})
		}
	}
	return msgs, reads
}

// frame encodes a client frame.
func frame(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// fanoutDown appends to out a copy of rec for each gateway of t, with the
// targets t has there.
func fanoutDown(out []kafkax.Msg, key string, t *targets, rec *events.DownRecord) []kafkax.Msg {
	for _, gw := range t.order {
		out = appendDown(out, kafkax.DownTopic(gw), []byte(key), rec, t.by[gw])
	}
	return out
}

// appendDown appends rec for targets to out as one record, or as several
// with a share of the targets each when one would pass maxPackBytes: a
// large group's push to a gateway holding tens of thousands of its members
// (about 30 bytes a target) would otherwise pass Kafka's message.max.bytes,
// and a record Kafka refuses is retried for ever. The parts keep the key,
// so they go to one partition in order; the gateway pushes each to its
// targets.
func appendDown(out []kafkax.Msg, topic string, key []byte, rec *events.DownRecord, targets []*events.Target) []kafkax.Msg {
	r := *rec
	r.Targets = targets
	v := kafkax.Encode(&r)
	if len(v) <= maxPackBytes || len(targets) < 2 {
		return append(out, kafkax.Msg{Topic: topic, Key: key, Value: v})
	}
	// Parts of about three quarters of the bound, so that uneven target
	// sizes rarely need a second split.
	parts := min(len(targets), len(v)/(maxPackBytes*3/4)+1)
	for i := range parts {
		out = appendDown(out, topic, key, rec, targets[i*len(targets)/parts:(i+1)*len(targets)/parts])
	}
	return out
}

// receipts builds the read receipts of reads from what the cursor save
// stored (saved, shared by the batches whose changes one UpdateCursors call
// carried, which are handed to it one after the other). A receipt
// announces the read cursor as saved, never the value asked: one above
// the conversation's last seq has been cut to it, and a lower one than
// the cursor held announces the cursor (a reply moves the replier's read
// cursor past the message answered, and the client's "read" for that
// message may come after the reply: the other side still learns it was
// read). None goes out when nothing was saved for it (the update was
// refused, or the reader has no list entry for the conversation: the
// store answers 0). A connection is told of one (reader, conversation)
// once per call. The store does not say what the cursor held before, so a
// value may be announced again: receipts are idempotent, like pushes, and
// never go backwards.
func (p *Processor) receipts(reads []readReceipt, saved *savedCursors) []kafkax.Msg {
	var out []kafkax.Msg
	for _, rr := range reads {
		c, ok := saved.read[rr.key]
		if !ok || c <= 0 {
			continue
		}
		// Each connection is told once per call. Not once per reader and
		// conversation: each read's targets leave out the device that
		// made it, so when two devices of one user read, each must hear
		// of the other's.
		to := newTargets()
		for _, gw := range rr.to.order {
			for _, tg := range rr.to.by[gw] {
				k := announcedKey{rr.key, gw, tg.Uid, tg.ConnId}
				if saved.announced[k] {
					continue
				}
				saved.announced[k] = true
				to.put(gw, tg)
			}
		}
		out = fanoutDown(out, rr.key.conv, to, &events.DownRecord{Kind: events.DownKind_FRAME,
			Frame: frame(protocol.Cursor{Type: protocol.TypeRead, Conv: rr.key.conv, UID: rr.key.uid, Seq: c})})
	}
	return pack(out, p.router.Batches)
}

// messageOutputs handles a stored send or recall: the ack and the pushes to
// every device of the conversation but the sending one go out through down
// and fanout. It returns the message pushed (nil: only acked) and an
// offline-push task when a one-to-one recipient has no device online.
func (p *Processor) messageOutputs(it *item, aud audience, senderGW bool, self []*events.Target,
	down func(gw, key string, rec *events.DownRecord), fanout func(string, *targets, *events.DownRecord)) (*common.Message, kafkax.Msg, bool) {
	r, res := it.rec, it.res
	if senderGW {
		down(r.GatewayId, r.ConvId, &events.DownRecord{Kind: events.DownKind_ACK, Targets: self,
			Ack: &events.Ack{ClientMsgId: r.ClientMsgId, ConvId: r.ConvId, Seq: res.Seq, CreatedAtMs: res.CreatedAtMs, Duplicate: res.Duplicate}})
	}
	var msg *common.Message
	if res.Duplicate {
		// Pushed again as stored (see readDuplicates), or only acked.
		p.m.duplicates.Inc()
		if msg = it.stored; msg == nil {
			return nil, kafkax.Msg{}, false
		}
	} else {
		p.m.persisted.Inc()
		if r.ReceivedAtMs > 0 {
			p.m.persistLatency.Observe(float64(p.now().UnixMilli()-r.ReceivedAtMs) / 1000)
		}
		msg = &common.Message{ConvId: r.ConvId, Seq: res.Seq, Sender: r.Sender, Recipient: it.peer,
			ClientMsgId: r.ClientMsgId, ContentType: r.ContentType, Body: r.Body, CreatedAtMs: res.CreatedAtMs}
		if r.Kind == events.UpKind_RECALL {
			msg.ContentType, msg.Body, msg.RefSeq = protocol.ContentTypeRecall, recallBody(r), r.Seq
		}
	}
	t := newTargets()
	if it.group != "" {
		t.add(r, aud.groups[it.group]...)
	} else {
		t.add(r, aud.users[it.peer]...)
		if it.peer != r.Sender {
			t.add(r, aud.users[r.Sender]...)
		}
	}
	fanout(r.ConvId, t, &events.DownRecord{Kind: events.DownKind_PUSH, Message: msg})
	if it.group != "" || r.Kind != events.UpKind_SEND || msg.Recalled || len(aud.users[it.peer]) > 0 {
		// (A duplicate of a message recalled since gets its push, which
		// shows the recall, but no notification.)
		return msg, kafkax.Msg{}, false
	}
	p.m.offline.Inc()
	return msg, kafkax.Msg{Topic: kafkax.TopicTask, Key: []byte(it.peer), Value: kafkax.Encode(&events.TaskRecord{
		Kind: events.TaskKind_OFFLINE_PUSH,
		OfflinePush: &events.OfflinePush{Uid: it.peer, ConvId: r.ConvId, Seq: msg.Seq, Sender: r.Sender,
			ContentType: msg.ContentType, Preview: preview(msg.Body), CreatedAtMs: msg.CreatedAtMs},
	})}, true
}

// archiveTask returns the ARCHIVE task for the message a stored send or
// recall pushed (msg; nil when it was only acked), or no task.
func (p *Processor) archiveTask(it *item, msg *common.Message) kafkax.Msg {
	r := it.rec
	if msg == nil {
		// A duplicate whose stored message could not be read back: the
		// archive misses it unless its first push archived it.
		p.log.Warn("stored message could not be read back; not archived", "conv", r.ConvId, "seq", it.res.Seq)
		return kafkax.Msg{}
	}
	if msg.Recalled && r.Kind == events.UpKind_SEND && msg.ClientMsgId == r.ClientMsgId && msg.Sender == r.Sender {
		// A message recalled since it was stored, pushed again as stored
		// (logic replaying a batch, or a retransmission): the store has
		// emptied its body, but the archive keeps what was sent, which
		// this record carries (same sender and cmid: the same message).
		m := *msg
		m.Body = r.Body
		msg = &m
	}
	p.m.archived.Inc()
	return kafkax.Msg{Topic: kafkax.TopicTask, Key: []byte(msg.ConvId),
		Value: kafkax.Encode(&events.TaskRecord{Kind: events.TaskKind_ARCHIVE, Archive: msg})}
}
