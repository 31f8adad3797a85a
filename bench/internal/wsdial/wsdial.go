// Package wsdial opens the bench tools' WebSocket client connections.
package wsdial

import (
	"context"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// Hello dials url (with its token) and reads until the gateway's hello:
// from then on the connection is routable. Frames before hello are
// dropped. The connection is closed on error.
func Hello(ctx context.Context, url string, timeout time.Duration) (*Conn, error) {
	nc, br, _, err := ws.Dialer{Timeout: timeout}.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, br) // hello may have come with the 101
	for {
		data, err := c.ReadMessage()
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.Contains(string(data), `"type":"hello"`) {
			return c, nil
		}
	}
}
