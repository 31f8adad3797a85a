package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"
)

// The write-scratch trimmer must find netpoll's fields (this fails when a
// netpoll upgrade changes them), shrink them, and leave a connection that
// still writes correctly when a flush holds more buffer nodes than the
// trimmed scratch has room for.
func TestScratchTrim(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := netpoll.DialConnection("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	scratch := func() int {
		b := reflect.ValueOf(conn).Elem().FieldByName("outputBarrier").Elem()
		return b.FieldByName("bs").Len()
	}
	// netpoll pools these arrays: after an earlier trim in this process
	// (go test -count=2) the connection may get one already trimmed.
	if n := scratch(); n < scratchIovecs {
		t.Fatalf("netpoll's scratch has only %d entries, fewer than the trimmer keeps (%d)", n, scratchIovecs)
	}
	var tr scratchTrimmer
	if !tr.trim(conn) {
		t.Fatal("trimmer did not recognise netpoll's connection")
	}
	if n := scratch(); n != scratchIovecs {
		t.Fatalf("scratch has %d entries after trimming, want %d", n, scratchIovecs)
	}
	if !tr.trim(conn) || scratch() != scratchIovecs {
		t.Fatal("second trim changed the result")
	}

	// Ten 5 KiB chunks: WriteBinary links each as its own node, so one
	// Flush has more nodes than iovecs; the poller must send the rest.
	var want bytes.Buffer
	w := conn.Writer()
	for i := 0; i < 10; i++ {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 5<<10)
		want.Write(chunk)
		if _, err := w.WriteBinary(chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, want.Len())
		_, _ = io.ReadFull(peer, b)
		got <- b
	}()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatal("peer received different bytes")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("flush did not deliver everything")
	}
}

// The session writes to the socket directly (session/writer.go), which is
// safe only because a close callback added in OnPrepare runs while the
// socket is still open: netpoll runs close callbacks last-added first, and
// its own, which closes the file descriptor, is added before OnPrepare.
// This pins that order for both ways a connection ends: the peer hangs up,
// or the server closes it.
func TestCloseCallbackRunsBeforeTheSocketCloses(t *testing.T) {
	for _, who := range []string{"peer", "server"} {
		t.Run(who+" closes", func(t *testing.T) {
			ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			type result struct{ fdOpen bool }
			got := make(chan result, 1)
			conns := make(chan netpoll.Connection, 1)
			loop, err := netpoll.NewEventLoop(func(context.Context, netpoll.Connection) error { return nil },
				netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
					fd := c.(interface{ Fd() int }).Fd()
					_ = c.AddCloseCallback(func(netpoll.Connection) error {
						_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
						got <- result{fdOpen: err == nil}
						return nil
					})
					conns <- c
					return context.Background()
				}))
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = loop.Serve(ln) }()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = loop.Shutdown(ctx)
			}()
			peer, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			var c netpoll.Connection
			select {
			case c = <-conns:
			case <-time.After(5 * time.Second):
				t.Fatal("no connection prepared")
			}
			if who == "peer" {
				peer.Close()
			} else {
				_ = c.Close()
			}
			select {
			case r := <-got:
				if !r.fdOpen {
					t.Fatal("the socket was already closed when the close callback ran")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("close callback did not run")
			}
		})
	}
}
