package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/session"
	"github.com/gochat-im/gochat/gateway/internal/upgrade"
	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// This file follows a connection through its life: handshake, route
// registration and hello, timeouts, close.

var _ session.Handler = (*Server)(nil)

// Handshake answers the upgrade request of sess.
func (s *Server) Handshake(sess *session.Session, head []byte) {
	res := s.up.Handle(head)
	if res.OK && s.draining.Load() {
		res = upgrade.Result{Status: http.StatusServiceUnavailable, Reason: upgrade.ReasonShutdown,
			Response: upgrade.ErrorResponse(http.StatusServiceUnavailable, "server shutting down")}
	}
	s.m.Handshakes.WithLabelValues(res.Reason).Inc()
	if !res.OK {
		s.log.Debug("handshake refused", "status", res.Status, "reason", res.Reason, "remote", sess.RemoteAddr())
		sess.Reject(res.Response)
		return
	}
	sess.Upgraded(res.Claims.UID, res.Claims.Device)
	if res.Binary {
		sess.UseMsgpack()
	}
	if err := sess.SendHandshake(res.Response); err != nil {
		return
	}
	s.table.Add(sess)
	s.reg.Add(&regTarget{s: s, sess: sess})
}

// HeadTooLarge refuses a request whose head passed the limit.
func (s *Server) HeadTooLarge(sess *session.Session) {
	s.m.Handshakes.WithLabelValues(upgrade.ReasonTooLarge).Inc()
	sess.Reject(upgrade.ErrorResponse(http.StatusRequestHeaderFieldsTooLarge, "request header too large"))
}

// Closed forgets a connection that is gone and queues its Disconnect.
// netpoll runs close callbacks only while no OnRequest is active, so this
// never races with Handshake for the same session.
func (s *Server) Closed(sess *session.Session) {
	s.table.RemovePending(sess.ConnID())
	if sess.UID() == "" {
		return
	}
	// Queue the Disconnect before leaving the table: Shutdown waits for an
	// empty table and then sends the last queued Disconnects.
	if sess.Registered() && sess.ClaimDisconnect() {
		s.reg.Remove(connInfo(sess))
	}
	s.table.Remove(sess)
}

func connInfo(sess *session.Session) *logic.ConnInfo {
	return &logic.ConnInfo{Uid: sess.UID(), Device: sess.Device(), ConnId: sess.ConnID()}
}

// regTarget adapts a session to the registrar.
type regTarget struct {
	s    *Server
	sess *session.Session
}

func (t *regTarget) Info() *logic.ConnInfo { return connInfo(t.sess) }

func (t *regTarget) Alive() bool { return t.sess.State() < session.StateClosing }

// Registered runs when logic accepted the route: hello goes out and the
// connection becomes routable. If it closed meanwhile, the route just
// created is withdrawn (the close path, seeing no registration yet, did
// not).
func (t *regTarget) Registered() {
	sess := t.sess
	sess.MarkRegistered()
	if sess.State() >= session.StateClosing || !sess.Open(t.s.hello(sess)) {
		if sess.ClaimDisconnect() {
			t.s.reg.Remove(connInfo(sess))
		}
	}
}

// Refused runs when logic's login policy refused the route because a
// later connection of the same Connect call took its place: the client
// gets the kick frame and close code a kick record carries, and no hello.
// (The registrar tells logic that this gateway closes such connections
// itself, so logic sends them no kick record.) This call stored no route
// for it, but an earlier attempt of the same batch may have, if its answer
// was lost: a Disconnect withdraws it (logic deletes a route only while it
// names this connection).
func (t *regTarget) Refused(reason, device string) {
	sess := t.sess
	t.s.m.Refused.Inc()
	if err := sess.Send(wsframe.Frame(ws.OpText, protocol.KickFrame(reason, device))); err == nil {
		sess.CloseWith(protocol.CloseReplaced, reason)
	}
	if sess.ClaimDisconnect() {
		t.s.reg.Remove(connInfo(sess))
	}
}

func (s *Server) hello(sess *session.Session) []byte {
	b, _ := json.Marshal(protocol.Hello{
		Type:        protocol.TypeHello,
		UID:         sess.UID(),
		Device:      sess.Device(),
		ConnID:      sess.ConnID(),
		HeartbeatMS: s.cfg.Heartbeat.Milliseconds(),
		MaxBody:     s.cfg.MaxBody,
	})
	return wsframe.Frame(ws.OpText, b)
}

// due decides, under a shard's read lock, whether sess needs the sweeper.
func (s *Server) due(sess *session.Session, now time.Time) bool {
	t := now.UnixNano()
	switch sess.State() {
	case session.StateHandshake:
		return t-sess.StateSince() >= int64(s.cfg.HandshakeTimeout)
	case session.StateRegistering:
		return t-sess.LastRead() >= int64(s.cfg.IdleTimeout) || t-sess.StateSince() >= int64(s.cfg.IdleTimeout)
	case session.StateOpen:
		return t-sess.LastRead() >= int64(s.cfg.IdleTimeout)
	case session.StateClosing:
		return t-sess.StateSince() >= int64(s.cfg.CloseGrace)
	}
	return false
}

// expire acts on a session the sweeper found due.
func (s *Server) expire(sess *session.Session, now time.Time) {
	t := now.UnixNano()
	switch sess.State() {
	case session.StateHandshake:
		s.m.Handshakes.WithLabelValues(upgrade.ReasonTimeout).Inc()
		sess.Kill()
	case session.StateRegistering:
		if t-sess.LastRead() >= int64(s.cfg.IdleTimeout) {
			sess.CloseWith(uint16(ws.StatusGoingAway), "idle timeout")
		} else {
			// logic did not accept the route in time; the client should
			// reconnect, perhaps to another gateway.
			sess.CloseWith(uint16(ws.StatusInternalServerError), "registration timed out")
		}
	case session.StateOpen:
		sess.CloseWith(uint16(ws.StatusGoingAway), "idle timeout")
	case session.StateClosing:
		sess.Kill()
	}
}
