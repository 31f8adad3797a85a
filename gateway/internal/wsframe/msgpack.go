package wsframe

import (
	"errors"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/pkg/protocol"
)

// MsgpackFrame returns the binary frame carrying the MessagePack form of a
// server text frame's JSON payload: what a connection that chose the
// MessagePack subprotocol gets instead of text. text must be one complete
// unmasked text frame (FIN set), as the gateway builds them.
func MsgpackFrame(text []byte) ([]byte, error) {
	if len(text) < 2 || text[0] != 0x80|byte(ws.OpText) || text[1]&0x80 != 0 {
		return nil, errors.New("wsframe: not an unmasked, unfragmented text frame")
	}
	n := HeaderLen(text[0], text[1])
	if len(text) < n {
		return nil, errors.New("wsframe: truncated frame")
	}
	payload := text[n:]
	// The gateway's frames hold strings, integers and booleans, whose
	// MessagePack is no longer than their JSON but for string headers (up
	// to 5 bytes against 2 quotes): a little room avoids a second
	// allocation. (A float can grow, to 9 bytes; the buffer then grows.)
	buf, err := protocol.AppendMsgpack(FrameBuffer(len(payload)+16), payload)
	if err != nil {
		return nil, err
	}
	return FinishFrame(buf, ws.OpBinary), nil
}
