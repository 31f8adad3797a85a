package wsclient

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

func TestBufferedReadsTheReaderFirst(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		_, _ = b.Write([]byte("HTTP/1.1 101\r\n\r\nhello world"))
		_, _ = b.Write([]byte(" and more"))
		b.Close()
	}()
	br := bufio.NewReader(a)
	line, err := br.ReadString('\n') // what a handshake reader would take
	if err != nil || line != "HTTP/1.1 101\r\n" {
		t.Fatalf("line %q, %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c := Buffered(a, br)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello world and more"; string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func TestBufferedWithoutLeftovers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Buffered(a, nil) != a {
		t.Fatal("nil reader: want the connection itself")
	}
	if Buffered(a, bufio.NewReader(strings.NewReader(""))) != a {
		t.Fatal("empty reader: want the connection itself")
	}
}
