package handler

import (
	"context"
	"encoding/json"
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
type LoginPolicy map[string]bool

// ParseLoginPolicy reads "phone=single,web=multi,...".
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
		p[k] = v == "single"
	}
	return p, nil
}

// Producer queues records to Kafka (a *kafkax.Producer).
type Producer interface {
	Produce(topic string, key, value []byte, cb kafkax.Callback) error
}

// kick is one connection to close.
type kick struct {
	route  *common.Route
	device string // the new login's device
}

// kicksFor finds the connections that new logins replace under the policy.
func (h *Handler) kicksFor(ctx context.Context, gw string, conns []*logic.ConnInfo) ([]kick, error) {
	single := map[string][]*logic.ConnInfo{} // uid -> new conns of a single-login kind
	for _, c := range conns {
		if h.cfg.LoginPolicy[ids.DeviceKind(c.Device)] {
			single[c.Uid] = append(single[c.Uid], c)
		}
	}
	if len(single) == 0 || h.router == nil {
		return nil, nil
	}
	uids := make([]string, 0, len(single))
	for u := range single {
		uids = append(uids, u)
	}
	routes, err := h.router.Lookup(ctx, uids)
	if err != nil {
		return nil, err
	}
	var out []kick
	for uid, news := range single {
		for _, rt := range routes[uid] {
			for _, c := range news {
				if ids.DeviceKind(rt.Device) == ids.DeviceKind(c.Device) && !(rt.GatewayId == gw && rt.ConnId == c.ConnId) {
					out = append(out, kick{route: rt, device: c.Device})
					break
				}
			}
		}
	}
	return out, nil
}

// sendKicks produces a kick frame with a close code to each connection.
func (h *Handler) sendKicks(kicks []kick) {
	for _, k := range kicks {
		frame, _ := json.Marshal(protocol.Kick{Type: protocol.TypeKick, Reason: "replaced", Device: k.device})
		rec := &events.DownRecord{Kind: events.DownKind_FRAME, Frame: frame, CloseCode: protocol.CloseReplaced, CloseReason: "replaced",
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
