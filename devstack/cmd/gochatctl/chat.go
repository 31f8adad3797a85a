package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"

	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
	"github.com/gochat-im/gochat/pkg/wsclient"
)

// useMsgpack makes the chat commands speak MessagePack (-msgpack).
var useMsgpack bool

// wsConn is the minimal WebSocket client the chat commands use. With
// binary set (the gateway agreed to MessagePack) it converts frames to and
// from JSON, so the commands deal in JSON either way.
type wsConn struct {
	c      net.Conn
	binary bool
}

func dialWS(ctx context.Context, url, token string) (*wsConn, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	if useMsgpack {
		d.Protocols = []string{protocol.SubprotocolMsgpack}
	}
	c, br, hs, err := d.Dial(ctx, url+"?token="+token)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	w := &wsConn{c: wsclient.Buffered(c, br), binary: hs.Protocol == protocol.SubprotocolMsgpack} // hello may have come with the 101
	if useMsgpack && !w.binary {
		c.Close()
		return nil, fmt.Errorf("connect %s: the gateway did not agree to MessagePack", url)
	}
	// Wait for hello: from then on pushes reach us.
	for {
		f, err := w.read()
		if err != nil {
			return nil, err
		}
		if f.Type == protocol.TypeHello {
			return w, nil
		}
	}
}

type anyFrame struct {
	Type string `json:"type"`
	raw  []byte
}

func (w *wsConn) read() (anyFrame, error) {
	for {
		data, op, err := wsutil.ReadServerData(w.c)
		if err != nil {
			return anyFrame{}, err
		}
		switch {
		case op == ws.OpBinary && w.binary:
			if data, err = protocol.AppendJSONFromMsgpack(nil, data); err != nil {
				return anyFrame{}, fmt.Errorf("bad frame from server: %w", err)
			}
		case op != ws.OpText || w.binary:
			continue
		}
		var f anyFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return anyFrame{}, fmt.Errorf("bad frame from server: %w", err)
		}
		f.raw = data
		return f, nil
	}
}

func (w *wsConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if !w.binary {
		return wsutil.WriteClientText(w.c, b)
	}
	if b, err = protocol.AppendMsgpack(nil, b); err != nil {
		return err
	}
	return wsutil.WriteClientBinary(w.c, b)
}

// text is what a person is shown of a message: its body, or what became
// of it.
func text(m protocol.Message) string {
	switch {
	case m.ContentType == protocol.ContentTypeRecall && m.Body == "":
		return fmt.Sprintf("(recalled #%d)", m.RefSeq)
	case m.ContentType == protocol.ContentTypeRecall:
		return fmt.Sprintf("(#%d removed: %s)", m.RefSeq, m.Body)
	case m.Recalled:
		return "(recalled)"
	}
	return m.Body
}

// printFrame shows a server frame to a person.
func printFrame(f anyFrame) {
	switch f.Type {
	case protocol.TypeMsg:
		var m protocol.Message
		_ = json.Unmarshal(f.raw, &m)
		fmt.Printf("[%s #%d] %s: %s\n", m.Conv, m.Seq, m.From, text(m))
	case protocol.TypeAck:
		var a protocol.Ack
		_ = json.Unmarshal(f.raw, &a)
		dup := ""
		if a.Duplicate {
			dup = " (duplicate)"
		}
		fmt.Printf("sent %s: conv %s seq %d%s\n", a.ClientMsgID, a.Conv, a.Seq, dup)
	case protocol.TypeError:
		var e protocol.Error
		_ = json.Unmarshal(f.raw, &e)
		fmt.Printf("error %d %s: %s\n", e.Code, e.Reason, e.Message)
	default:
		fmt.Println(string(f.raw))
	}
}

// cmdSend sends one message and waits for its ack or error.
func cmdSend(ctx context.Context, url, token, to, body string) error {
	w, err := dialWS(ctx, url, token)
	if err != nil {
		return err
	}
	defer w.c.Close()
	cmid := strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := w.write(protocol.Send{Type: protocol.TypeSend, ClientMsgID: cmid, To: to, Body: body}); err != nil {
		return err
	}
	_ = w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := w.read()
		if err != nil {
			return err
		}
		if f.Type == protocol.TypeAck || f.Type == protocol.TypeError {
			printFrame(f)
			if f.Type == protocol.TypeError {
				return errors.New("send failed")
			}
			return nil
		}
	}
}

// cmdListen prints pushes until interrupted; lines typed as "@user text"
// are sent. At the end of a terminal's input (Ctrl-D) it quits; when its
// input is a file or a pipe (or /dev/null, as for a background job) it
// sends the lines there and then goes on listening until interrupted.
func cmdListen(ctx context.Context, url, token string) error {
	w, err := dialWS(ctx, url, token)
	if err != nil {
		return err
	}
	defer w.c.Close()
	_, err = unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	interactive := err == nil // a terminal (not a file, pipe or /dev/null)
	if interactive {
		fmt.Println("connected; type \"@user message\" to send, Ctrl-D to quit")
	} else {
		fmt.Println("connected; listening until interrupted")
	}
	go func() {
		<-ctx.Done()
		w.c.Close()
	}()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		n := 0
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			to, body, ok := strings.Cut(strings.TrimPrefix(line, "@"), " ")
			if !strings.HasPrefix(line, "@") || !ok {
				fmt.Println(`usage: @user message`)
				continue
			}
			n++
			cmid := fmt.Sprintf("%d-%d", time.Now().Unix(), n)
			if err := w.write(protocol.Send{Type: protocol.TypeSend, ClientMsgID: cmid, To: to, Body: body}); err != nil {
				fmt.Println("write:", err)
			}
		}
		if interactive {
			w.c.Close()
		}
	}()
	// Keep the connection alive while idle.
	go func() {
		for range time.Tick(20 * time.Second) {
			if w.write(protocol.Ping{Type: protocol.TypePing}) != nil {
				return
			}
		}
	}()
	for {
		f, err := w.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if f.Type != protocol.TypePong {
			printFrame(f)
		}
	}
}

// cmdHistory prints a one-to-one conversation through the sync operation.
func cmdHistory(ctx context.Context, url, token, uid, peer string) error {
	w, err := dialWS(ctx, url, token)
	if err != nil {
		return err
	}
	defer w.c.Close()
	conv := ids.P2P(uid, peer)
	var after int64
	for {
		if err := w.write(protocol.SyncReq{Type: protocol.TypeSync, RID: "h", Conv: conv, After: after, Limit: protocol.MaxSyncLimit}); err != nil {
			return err
		}
		var resp protocol.SyncResp
		for {
			f, err := w.read()
			if err != nil {
				return err
			}
			if f.Type == protocol.TypeError {
				printFrame(f)
				return errors.New("sync failed")
			}
			if f.Type == protocol.TypeSync {
				if err := json.Unmarshal(f.raw, &resp); err != nil {
					return err
				}
				break
			}
		}
		for _, m := range resp.Messages {
			fmt.Printf("#%d %s %s: %s\n", m.Seq, time.UnixMilli(m.TS).Format("15:04:05"), m.From, text(m))
			after = m.Seq
		}
		if !resp.HasMore {
			return nil
		}
	}
}
