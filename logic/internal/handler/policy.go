package handler

import (
	"context"
	"fmt"
	"strings"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// LoginPolicy says, per device kind (see ids.DeviceKind), whether a user
// may be connected on several devices of that kind at once. A kind marked
// single keeps only the newest connection: older ones get a kick frame and
// are closed with protocol.CloseReplaced. Kinds not listed allow many.
// Whatever the policy, a user has one connection per device id (one route
// each), the newest: older ones are kicked the same way.
type LoginPolicy map[string]bool

// ParseLoginPolicy reads "phone=single,web=multi,...". A kind has no '-'
// (the kind of "phone-x" is "phone").
func ParseLoginPolicy(s string) (LoginPolicy, error) {
	p := LoginPolicy{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !ids.ValidDevice(k) || (v != "single" && v != "multi") {
			return nil, fmt.Errorf("login policy %q: want kind=single or kind=multi", kv)
		}
		if ids.DeviceKind(k) != k {
			// No device has it: a device's kind ends at its first '-'.
			return nil, fmt.Errorf("login policy %q: a kind has no '-' (the kind of device %s is %s)", kv, k, ids.DeviceKind(k))
		}
		p[k] = v == "single"
	}
	return p, nil
}

// Producer queues records to Kafka (a *kafkax.Producer).
type Producer interface {
	Produce(topic string, key, value []byte, cb kafkax.Callback) error
}

// Reasons of a kick (the kick frame's reason and the close frame's).
const (
	// kickReplaced: the user logged in on another device of the same
	// single-login kind.
	kickReplaced = "replaced"
	// kickSameDevice: a newer connection of the user with the same device
	// id, of any kind. A user has one route per device id, so the older
	// connection would get no pushes any more.
	kickSameDevice = "same_device"
)

// kick is one connection to close.
type kick struct {
	route  *common.Route
	device string // the new connection's device
	// refused: the connection is one of the same Connect call, refused in
	// favour of a later one of that call; it has no route.
	refused bool
}

func (k kick) reason() string {
	if k.route.Device == k.device {
		return kickSameDevice
	}
	return kickReplaced
}

// kicksFor applies the login policy to the new connections conns of
// gateway gw (a Connect that is not a refresh), whose routes are about to
// be stored. Of the connections of one user in conns with one device id,
// or with one single-login kind, the last one wins: the others are kicked
// and keep[i] is false for them, so their routes are not stored. Then the
// connections already routed that a winner replaces are kicked: those of
// the same device id, and under the policy those of the same single-login
// kind. Without a router or a producer the policy is not applied.
func (h *Handler) kicksFor(ctx context.Context, gw string, conns []*logic.ConnInfo) (kicks []kick, keep []bool, err error) {
	keep = make([]bool, len(conns))
	for i := range keep {
		keep[i] = true
	}
	if h.router == nil || h.prod == nil || len(conns) == 0 {
		return nil, keep, nil
	}
	type slot struct {
		uid, name string
		kind      bool // name is a single-login kind, else a device id
	}
	winner := func(c *logic.ConnInfo) slot {
		if kind := ids.DeviceKind(c.Device); h.cfg.LoginPolicy[kind] {
			return slot{c.Uid, kind, true}
		}
		return slot{c.Uid, c.Device, false}
	}
	last := make(map[slot]int, len(conns))
	for i, c := range conns {
		last[winner(c)] = i
	}
	ours := make(map[string]map[int64]bool, len(conns)) // uid -> this request's conn ids
	for i, c := range conns {
		if ours[c.Uid] == nil {
			ours[c.Uid] = map[int64]bool{}
		}
		ours[c.Uid][c.ConnId] = true
		w := conns[last[winner(c)]]
		if w == c {
			continue
		}
		keep[i] = false
		if w.ConnId != c.ConnId { // else the same connection twice
			kicks = append(kicks, kick{route: &common.Route{Uid: c.Uid, Device: c.Device, GatewayId: gw, ConnId: c.ConnId}, device: w.Device, refused: true})
		}
	}
	uids := make([]string, 0, len(ours))
	for u := range ours {
		uids = append(uids, u)
	}
	routes, err := h.router.Lookup(ctx, uids)
	if err != nil {
		return nil, nil, err
	}
	for _, i := range last {
		c := conns[i]
		kind := ids.DeviceKind(c.Device)
		single := h.cfg.LoginPolicy[kind]
		for _, rt := range routes[c.Uid] {
			if rt.GatewayId == gw && ours[c.Uid][rt.ConnId] {
				continue // this request's own connection, kicked above if need be
			}
			if rt.Device == c.Device || (single && ids.DeviceKind(rt.Device) == kind) {
				kicks = append(kicks, kick{route: rt, device: c.Device})
			}
		}
	}
	return kicks, keep, nil
}

// sendKicks produces a kick frame with a close code to each connection.
func (h *Handler) sendKicks(kicks []kick) {
	for _, k := range kicks {
		reason := k.reason()
		rec := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: protocol.KickFrame(reason, k.device), CloseCode: protocol.CloseReplaced, CloseReason: reason,
			Targets: []*events.Target{{Uid: k.route.Uid, ConnId: k.route.ConnId}}}
		uid, gw := k.route.Uid, k.route.GatewayId
		err := h.prod.Produce(kafkax.DownTopic(gw), []byte(uid), kafkax.Encode(rec), func(err error) {
			if err != nil {
				h.log.Warn("kick not delivered", "uid", uid, "gateway", gw, "err", err)
			}
		})
		if err != nil {
			h.log.Warn("kick not produced", "uid", uid, "gateway", gw, "err", err)
		}
	}
}
