package downstream

import (
	"reflect"
	"testing"

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
