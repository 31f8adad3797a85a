package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// archived reads every line of the archive under dir, by (conv, seq).
func archived(t *testing.T, dir string) map[string]map[int64]protocol.Message {
	t.Helper()
	out := map[string]map[int64]protocol.Message{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m protocol.Message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: %q: %v", path, sc.Text(), err)
			}
			if out[m.Conv] == nil {
				out[m.Conv] = map[int64]protocol.Message{}
			}
			out[m.Conv][m.Seq] = m
		}
		return sc.Err()
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestArchive: with logic -archive and task -archive-dir, every stored
// message (one-to-one, group, a recall event) reaches the archive files
// through the task service.
func TestArchive(t *testing.T) {
	dir := t.TempDir()
	e := startStack(t, stack.Config{Extra: map[string][]string{
		"logic": {"-archive"},
		"task":  {"-archive-dir", dir},
	}})
	conv := ids.P2P("alice", "bob")
	alice := connect(t, "alice", e.url(0, e.token("alice", "phone")))
	bob := connect(t, "bob", e.url(0, e.token("bob", "phone")))
	alice.waitType(wait, protocol.TypeHello)
	bob.waitType(wait, protocol.TypeHello)

	send(alice, "a1", "bob", "first")
	send(alice, "a2", "bob", "second \"quoted\"")
	waitAck(t, alice, "a1")
	waitAck(t, alice, "a2")
	alice.sendJSON(protocol.Recall{Type: protocol.TypeRecall, ClientMsgID: "r1", Conv: conv, Seq: 1})
	if a := waitAck(t, alice, "r1"); a.Seq != 3 {
		t.Fatalf("recall ack = %+v", a)
	}
	if _, code := groupOp(t, alice, protocol.GroupReq{Type: protocol.TypeGroupCreate, RID: "g", Group: "arch", Members: []string{"bob"}}); code != 0 {
		t.Fatalf("group create: code %d", code)
	}
	sendGroup(alice, "g1", "arch", "to the group")
	waitAck(t, alice, "g1")

	var got map[string]map[int64]protocol.Message
	deadline := time.Now().Add(wait)
	for {
		got = archived(t, dir)
		if len(got[conv]) == 3 && len(got["g:arch"]) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive after %v: %+v", wait, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := got[conv]
	if m := p[1]; m.From != "alice" || m.To != "bob" || m.Body != "first" || m.ClientMsgID != "a1" || m.TS == 0 {
		t.Fatalf("seq 1 archived as %+v", m)
	}
	if m := p[2]; m.Body != "second \"quoted\"" {
		t.Fatalf("seq 2 archived as %+v", m)
	}
	if m := p[3]; m.ContentType != protocol.ContentTypeRecall || m.RefSeq != 1 {
		t.Fatalf("recall event archived as %+v", m)
	}
	if m := got["g:arch"][1]; m.From != "alice" || m.Body != "to the group" {
		t.Fatalf("group message archived as %+v", m)
	}
}
