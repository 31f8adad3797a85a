package server

import (
	"bytes"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
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
	if n := scratch(); n <= scratchIovecs {
		t.Fatalf("netpoll's scratch already has only %d entries; is the trimmer still needed?", n)
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
