package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/pkg/timerslack"
)

// TestMultiDevice: every device of a user gets incoming messages and copies
// of the user's own sends; a new phone login kicks the old phone, and other
// device kinds stay connected.
func TestMultiDevice(t *testing.T) {
	// Every service of this stack also restarts itself at start-up to take
	// a timer slack (-timer-slack): the test checks that each has it, and
	// the rest of the test runs on the restarted processes.
	const slack = 500 * time.Microsecond
	extra := map[string][]string{}
	for _, kind := range []string{"gateway", "logic", "task", "dataproxy"} {
		extra[kind] = []string{"-timer-slack", slack.String()}
	}
	// New connections wait up to 300 ms for others to share their Connect
	// call, so that two logins dialled one after the other are registered
	// together (the last subtest).
	extra["gateway"] = append(extra["gateway"], "-register-flush", "300ms")
	e := startStack(t, stack.Config{Gateways: 2, Extra: extra})
	t.Run("every thread of every service has the timer slack", func(t *testing.T) {
		pids := e.st.PIDs()
		if len(pids) != 5 {
			t.Fatalf("services %v, want dataproxy, logic, 2 gateways, task", pids)
		}
		for name, pid := range pids {
			threads, err := timerslack.Threads(pid)
			if err != nil || len(threads) == 0 {
				t.Fatalf("%s: threads of pid %d: %v", name, pid, err)
			}
			for tid, got := range threads {
				if got != slack {
					t.Fatalf("%s thread %d: timer slack %v, want %v", name, tid, got, slack)
				}
			}
		}
	})
	phoneA := connect(t, "alice/phone-a", e.url(0, e.token("alice", "phone-a")))
	web := connect(t, "alice/web", e.url(1, e.token("alice", "web")))
	bob := connect(t, "bob", e.url(1, e.token("bob", "phone")))
	for _, c := range []*wsClient{phoneA, web, bob} {
		c.waitType(wait, protocol.TypeHello)
	}

	send(bob, "b1", "alice", "hi alice")
	waitAck(t, bob, "b1")
	for _, c := range []*wsClient{phoneA, web} {
		if m := waitMsg(t, c); m.Seq != 1 || m.From != "bob" {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	send(web, "a1", "bob", "hi bob, from the web")
	if a := waitAck(t, web, "a1"); a.Seq != 2 {
		t.Fatalf("ack = %+v", a)
	}
	if m := waitMsg(t, bob); m.Seq != 2 || m.From != "alice" {
		t.Fatalf("bob got %+v", m)
	}
	if m := waitMsg(t, phoneA); m.Seq != 2 || m.From != "alice" || m.Body != "hi bob, from the web" {
		t.Fatalf("alice's phone did not get the copy of her own send: %+v", m)
	}
	if extra := web.pending(protocol.TypeMsg); len(extra) != 0 {
		t.Fatalf("the sending device got its own message pushed back: %v", extra)
	}

	phoneB := connect(t, "alice/phone-b", e.url(1, e.token("alice", "phone-b")))
	phoneB.waitType(wait, protocol.TypeHello)
	var k protocol.Kick
	phoneA.waitType(wait, protocol.TypeKick).decode(t, &k)
	if k.Reason != "replaced" || k.Device != "phone-b" {
		t.Fatalf("kick = %+v", k)
	}
	if code := phoneA.waitClosed(wait); code != protocol.CloseReplaced {
		t.Fatalf("old phone closed with %d, want %d", code, protocol.CloseReplaced)
	}

	send(bob, "b2", "alice", "still there?")
	waitAck(t, bob, "b2")
	for _, c := range []*wsClient{phoneB, web} {
		if m := waitMsg(t, c); m.Seq != 3 {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	// Two phone logins registered in one Connect call: the policy keeps
	// the later one, and the gateway closes the other with the kick
	// without ever sending it hello. The phone routed before is kicked by
	// the one kept.
	phoneC := connect(t, "alice/phone-c", e.url(0, e.token("alice", "phone-c")))
	phoneD := connect(t, "alice/phone-d", e.url(0, e.token("alice", "phone-d")))
	first := func(c *wsClient) frame {
		t.Helper()
		f, err := c.poll(wait, func(f frame) bool { return f.Type == protocol.TypeHello || f.Type == protocol.TypeKick })
		if err != nil {
			t.Fatalf("%s: neither hello nor kick: %v", c.name, err)
		}
		return f
	}
	kept, refused := phoneD, phoneC
	fc, fd := first(phoneC), first(phoneD)
	if fc.Type == protocol.TypeHello { // the gateway took phone-d's handshake first
		kept, refused, fc, fd = phoneC, phoneD, fd, fc
	}
	if fc.Type != protocol.TypeKick || fd.Type != protocol.TypeHello {
		t.Fatalf("first frames %s (%s) and %s (%s), want a kick and a hello", fc.Type, refused.name, fd.Type, kept.name)
	}
	keptDevice := strings.TrimPrefix(kept.name, "alice/")
	fc.decode(t, &k)
	if k.Reason != "replaced" || k.Device != keptDevice {
		t.Fatalf("kick of %s = %+v, want replaced by %s", refused.name, k, keptDevice)
	}
	if code := refused.waitClosed(wait); code != protocol.CloseReplaced {
		t.Fatalf("%s closed with %d, want %d", refused.name, code, protocol.CloseReplaced)
	}
	if h := refused.pending(protocol.TypeHello); len(h) != 0 {
		t.Fatalf("%s got hello after its kick: %s", refused.name, h[0].Raw)
	}
	phoneB.waitType(wait, protocol.TypeKick).decode(t, &k)
	if k.Reason != "replaced" || k.Device != keptDevice {
		t.Fatalf("kick of phone-b = %+v", k)
	}
	send(bob, "b3", "alice", "which phone now?")
	waitAck(t, bob, "b3")
	for _, c := range []*wsClient{kept, web} {
		if m := waitMsg(t, c); m.Seq != 4 {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}
}
