// Package wsdial opens the bench tools' WebSocket client connections.
package wsdial

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/gochat-im/gochat/pkg/wsclient"
)

// Hello dials url (with its token) and reads until the gateway's hello:
// from then on the connection is routable. Frames before hello are
// dropped. The connection is closed on error.
func Hello(ctx context.Context, url string, timeout time.Duration) (net.Conn, error) {
	c, br, _, err := ws.Dialer{Timeout: timeout}.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c = wsclient.Buffered(c, br) // hello may have come with the 101
	for {
		data, _, err := wsutil.ReadServerData(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.Contains(string(data), `"type":"hello"`) {
			return c, nil
		}
	}
}
