// Package wsdial opens the bench tools' WebSocket client connections.
package wsdial

import (
	"context"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/gochat-im/gochat/pkg/protocol"
)

// Hello dials url (with its token) and reads until the gateway's hello:
// from then on the connection is routable. Frames before hello are
// dropped. The connection is closed on error.
func Hello(ctx context.Context, url string, timeout time.Duration) (*Conn, error) {
	return HelloWith(ctx, url, timeout)
}

// HelloWith is Hello asking for subprotocols (protocol.SubprotocolMsgpack:
// the connection speaks MessagePack if the gateway agrees; see Conn.Binary).
func HelloWith(ctx context.Context, url string, timeout time.Duration, protocols ...string) (*Conn, error) {
	nc, br, hs, err := ws.Dialer{Timeout: timeout, Protocols: protocols}.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, br) // hello may have come with the 101
	c.binary = hs.Protocol == protocol.SubprotocolMsgpack
	for {
		data, err := c.ReadJSON()
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.Contains(string(data), `"type":"hello"`) {
			return c, nil
		}
	}
}
