package downstream

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/gateway/internal/wsframe"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// Recalls: the recalled message (pushed again by a later sync or resend)
// says so, and the recall event names the message it takes back.
func TestEncodeRecallFields(t *testing.T) {
	cases := []struct {
		name string
		msg  *common.Message
		want map[string]any
	}{
		{"recalled", &common.Message{ConvId: "p:a:b", Seq: 3, Sender: "a", Recipient: "b", ClientMsgId: "c", ContentType: "text", CreatedAtMs: 5, Recalled: true},
			map[string]any{"type": "msg", "conv": "p:a:b", "seq": 3.0, "from": "a", "to": "b", "cmid": "c", "content_type": "text", "body": "", "ts": 5.0, "recalled": true}},
		{"recall-event", &common.Message{ConvId: "g:team", Seq: 9, Sender: "a", ClientMsgId: "r1", ContentType: protocol.ContentTypeRecall, CreatedAtMs: 6, RefSeq: 3},
			map[string]any{"type": "msg", "conv": "g:team", "seq": 9.0, "from": "a", "cmid": "r1", "content_type": "gochat.recall", "body": "", "ts": 6.0, "ref_seq": 3.0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frame, kind, err := Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Message: tc.msg})
			if err != nil || kind != "push" {
				t.Fatalf("Encode: %q %v", kind, err)
			}
			if got := decode(t, frame); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// Pushes and acks are built in place; the frames are exactly the ones the
// encoding/json path gave, for every header length (payloads under 126
// bytes, up to 64 KiB, and longer).
func TestEncodeFramesAsEncodingJSON(t *testing.T) {
	for _, bodyLen := range []int{0, 1, 20, 40, 60, 100, 125, 200, 65_000, 65_535, 66_000, 200_000} {
		body := strings.Repeat("é<x>\n", bodyLen/6+1)[:bodyLen/6*6] + strings.Repeat("b", bodyLen%6)
		m := &common.Message{ConvId: "p:alice:bob", Seq: int64(bodyLen), Sender: "alice", Recipient: "bob", ClientMsgId: "c-1",
			ContentType: "text", Body: body, CreatedAtMs: 1764288000000, RefSeq: int64(bodyLen % 3)}
		frame, _, err := Encode(&events.DownRecord{Kind: events.DownKind_PUSH, Message: m})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(protocol.Message{Type: protocol.TypeMsg, Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
			ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs, RefSeq: m.RefSeq})
		if !bytes.Equal(frame, wsframe.Frame(ws.OpText, want)) {
			t.Fatalf("push with a %d-byte body: frame differs\n got %.80q\nwant %.80q", bodyLen, frame, wsframe.Frame(ws.OpText, want))
		}
	}
	for _, dup := range []bool{false, true} {
		a := &events.Ack{ClientMsgId: "c\"1", ConvId: "g:team", Seq: 7, CreatedAtMs: 3, Duplicate: dup}
		frame, kind, err := Encode(&events.DownRecord{Kind: events.DownKind_ACK, Ack: a})
		if err != nil || kind != "ack" {
			t.Fatalf("Encode ack: %q %v", kind, err)
		}
		want, _ := json.Marshal(protocol.Ack{Type: protocol.TypeAck, ClientMsgID: a.ClientMsgId, Conv: a.ConvId, Seq: a.Seq, TS: a.CreatedAtMs, Duplicate: dup})
		if !bytes.Equal(frame, wsframe.Frame(ws.OpText, want)) {
			t.Fatalf("ack (dup %v): got %q, want %q", dup, frame, wsframe.Frame(ws.OpText, want))
		}
	}
}
