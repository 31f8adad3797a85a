package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// TestModeration runs content moderation through the real stack: logic
// -moderate emits every message to the task service, whose moderation job
// recalls what its word list or its webhook rejects through logic's
// Recall RPC; every device gets the recall event with the reason, and sync
// serves the message recalled. An app backend's own Recall call takes
// back any message, once.
func TestModeration(t *testing.T) {
	words := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(words, []byte("# blocked\nforbidden phrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		judged []int64
	)
	judge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Seq  int64  `json:"seq"`
			Body string `json:"body"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		mu.Lock()
		judged = append(judged, req.Seq)
		mu.Unlock()
		if strings.Contains(req.Body, "#spam") {
			_, _ = io.WriteString(w, `{"action":"recall","reason":"spam (test judge)"}`)
			return
		}
		_, _ = io.WriteString(w, `{"action":"allow"}`)
	}))
	t.Cleanup(judge.Close)
	e := startStack(t, stack.Config{Extra: map[string][]string{
		"logic": {"-moderate"},
		"task":  {"-moderation-words", words, "-moderation-url", judge.URL},
	}})
	conv := ids.P2P("alice", "bob")
	alice := connect(t, "alice", e.url(0, e.token("alice", "phone")))
	bob := connect(t, "bob", e.url(0, e.token("bob", "phone")))
	alice.waitType(wait, protocol.TypeHello)
	bob.waitType(wait, protocol.TypeHello)

	send(alice, "m1", "bob", "hello bob")
	send(alice, "m2", "bob", "a FORBIDDEN Phrase here")
	send(alice, "m3", "bob", "buy now #spam")
	for i, cmid := range []string{"m1", "m2", "m3"} {
		if a := waitAck(t, alice, cmid); a.Seq != int64(i+1) {
			t.Fatalf("ack %s = %+v", cmid, a)
		}
	}
	// Both sides get the three messages and then the two recall events
	// (in either order: the task service judges messages concurrently).
	for _, c := range []*wsClient{alice, bob} {
		events := map[int64]protocol.Message{}
		for len(events) < 2 {
			m := waitMsg(t, c)
			if m.ContentType == protocol.ContentTypeRecall {
				events[m.RefSeq] = m
			}
		}
		if ev := events[2]; ev.Body != "removed by moderation: blocked words" || ev.From != "alice" || ev.Seq < 4 {
			t.Fatalf("%s: recall event of seq 2 = %+v", c.name, ev)
		}
		if ev := events[3]; ev.Body != "spam (test judge)" || ev.Seq < 4 {
			t.Fatalf("%s: recall event of seq 3 = %+v", c.name, ev)
		}
	}
	s := e.syncRPC("bob", conv, 0)
	if len(s.Messages) != 5 {
		t.Fatalf("sync: %+v", s.Messages)
	}
	if m := s.Messages; m[0].Recalled || m[0].Body != "hello bob" || !m[1].Recalled || m[1].Body != "" || !m[2].Recalled || m[2].Body != "" {
		t.Fatalf("sync after moderation: %+v", m[:3])
	}
	// The word list decided seq 2 alone; the webhook judged the others
	// (seq 1 perhaps only now: tasks run concurrently).
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		asked := map[int64]bool{}
		for _, seq := range judged {
			asked[seq] = true
		}
		mu.Unlock()
		if asked[2] {
			t.Fatalf("the webhook was asked about seq 2: %v", asked)
		}
		if asked[1] && asked[3] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook was asked about %v, want 1 and 3", asked)
		}
	}

	// An app backend takes back seq 1 (reported by bob), with the recall
	// secret, which opens nothing else; again: the same answer; a recall
	// event cannot be recalled.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := e.st.State().AdminSecret
	if _, err := e.logic.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: e.st.State().RecallSecret, Uid: "alice", Device: "web"}); err == nil {
		t.Fatal("IssueToken accepted the recall secret")
	} else if c, _ := errcode.Of(err); c != errcode.Unauthorized {
		t.Fatalf("IssueToken with the recall secret: %v", err)
	}
	req := &logic.RecallReq{AdminSecret: e.st.State().RecallSecret, ConvId: conv, Seq: 1, Reason: "reported by bob"}
	r, err := e.logic.Recall(ctx, req)
	if err != nil || r.Seq != 6 || r.Duplicate || r.AlreadyRecalled {
		t.Fatalf("Recall: %+v %v", r, err)
	}
	if m := waitMsg(t, bob); m.Seq != 6 || m.RefSeq != 1 || m.Body != "reported by bob" {
		t.Fatalf("bob got %+v", m)
	}
	if r2, err := e.logic.Recall(ctx, req); err != nil || r2.Seq != 6 || !r2.Duplicate {
		t.Fatalf("Recall again: %+v %v", r2, err)
	}
	if _, err := e.logic.Recall(ctx, &logic.RecallReq{AdminSecret: admin, ConvId: conv, Seq: 4, Reason: "x"}); err == nil {
		t.Fatal("a recall event was recalled")
	} else if c, _ := errcode.Of(err); c != errcode.BadField {
		t.Fatalf("recalling a recall event: %v", err)
	}
	// Clients cannot use the ids GoChat keeps for these recalls.
	alice.sendJSON(protocol.Send{Type: protocol.TypeSend, ClientMsgID: protocol.OperatorRecallCMID(1), To: "bob", Body: "x"})
	if e := waitError(t, alice); e.Code != int32(errcode.BadField) {
		t.Fatalf("reserved cmid: %+v", e)
	}

	// In a group: a member's message is taken down the same way.
	if _, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupCreate, RID: "g", Group: "mods", Members: []string{"bob"}}); code != 0 {
		t.Fatalf("group create: code %d", code)
	}
	sendGroup(bob, "g1", "mods", "#spam in the group")
	if a := waitAck(t, bob, "g1"); a.Seq != 1 {
		t.Fatalf("group ack = %+v", a)
	}
	ev := alice.waitFor(wait, "the group recall event", func(f frame) bool {
		return f.Type == protocol.TypeMsg && strings.Contains(string(f.Raw), `"content_type":"gochat.recall"`) && strings.Contains(string(f.Raw), `"g:mods"`)
	})
	var m protocol.Message
	ev.decode(t, &m)
	if m.RefSeq != 1 || m.Body != "spam (test judge)" || m.From != "bob" {
		t.Fatalf("group recall event = %+v", m)
	}
}
