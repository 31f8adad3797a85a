//go:build linux

// Package refserver is the yardstick for the gateway's push figure: a
// minimal WebSocket push server on cloudwego/netpoll, with none of the
// gateway's work. It upgrades every connection without looking at the
// token, sends a hello naming a connection id (what the wsload clients
// wait for), ignores what clients send, and on command writes one
// prebuilt frame to every connection it holds: one Malloc, one copy and
// one Flush (one sendmsg) per connection, from a few goroutines that walk
// the connection list. There is no Kafka consumer, no record decoding, no
// connection-table lookup, no per-connection queue and no writer pool.
//
// The push tool runs K of these as child processes (push -reference K)
// against the same client fleet it uses for the gateways, so the two
// figures differ only by the server. Each child is this executable
// started again with Env set; it reads its Config as the first line on
// stdin, answers with its address, then takes push commands one line
// each and answers each when every connection has been written; it exits
// when stdin closes.
//
// Concurrency: writes to one connection are serialised by a mutex per
// connection (hello from netpoll's goroutine, pushes from the writers).
package refserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
)

// Env marks a process started as a reference server.
const Env = "GOCHAT_REFSERVER"

// IsServer reports whether this process is a reference server child; main
// calls Serve first thing if it is.
func IsServer() bool { return os.Getenv(Env) == "1" }

// Write modes.
const (
	// WriteNetpoll: Malloc + copy + Flush on the netpoll connection, as
	// the gateway does (one sendmsg per connection).
	WriteNetpoll = "netpoll"
	// WriteRaw: one write(2) on the socket per connection, no netpoll
	// code on the write path at all: the kernel's floor.
	WriteRaw = "raw"
)

// Config shapes one reference server.
type Config struct {
	// Listen is the host:port to listen on (port 0: any).
	Listen string
	// Writers is how many goroutines share a push; 0: GOMAXPROCS.
	Writers int
	// Write is WriteNetpoll or WriteRaw.
	Write string
	// BufferSize and LinkBufferCap set netpoll's buffers (0: the
	// gateway's 128 and 128).
	BufferSize, LinkBufferCap int
	// MaxProcs sets GOMAXPROCS (0: leave it).
	MaxProcs int
}

// reply is what a child writes to stdout: its address once, then one
// line per push done.
type reply struct {
	Addr   string `json:",omitempty"`
	PID    int    `json:",omitempty"`
	Pushed int    `json:",omitempty"`
	Failed int    `json:",omitempty"`
	NS     int64  `json:",omitempty"` // wall time of the push
	Err    string `json:",omitempty"`
}

// command is what the parent writes to a child.
type command struct {
	Frame []byte // the complete WebSocket frame to write to every connection
}

// conn is one client connection.
type conn struct {
	c    netpoll.Connection
	fd   int
	id   int64
	mu   sync.Mutex
	open atomic.Bool
}

// server holds the connections of one reference process.
type server struct {
	cfg    Config
	mu     sync.Mutex
	conns  []*conn
	nextID atomic.Int64
}

// Serve runs a reference server child: Config from the first line of in,
// replies on out, until in is closed.
func Serve(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if cfg.MaxProcs > 0 {
		runtime.GOMAXPROCS(cfg.MaxProcs)
	}
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.Write == "" {
		cfg.Write = WriteNetpoll
	}
	netpoll.LinkBufferCap = 128
	if cfg.LinkBufferCap > 0 {
		netpoll.LinkBufferCap = cfg.LinkBufferCap
	}
	bs := 128
	if cfg.BufferSize > 0 {
		bs = cfg.BufferSize
	}
	if err := netpoll.Configure(netpoll.Config{BufferSize: bs}); err != nil {
		return err
	}
	s := &server{cfg: cfg}
	ln, err := netpoll.CreateListener("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	loop, err := netpoll.NewEventLoop(s.onRequest, netpoll.WithOnPrepare(s.onPrepare))
	if err != nil {
		return err
	}
	go func() { _ = loop.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = loop.Shutdown(ctx)
	}()
	enc := json.NewEncoder(out)
	if err := enc.Encode(reply{Addr: ln.Addr().String(), PID: os.Getpid()}); err != nil {
		return err
	}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil // the parent closed stdin
		}
		var c command
		if err := json.Unmarshal(line, &c); err != nil || len(c.Frame) == 0 {
			_ = enc.Encode(reply{Err: "bad command"})
			continue
		}
		t := time.Now()
		n, failed := s.push(c.Frame)
		if err := enc.Encode(reply{Pushed: n, Failed: failed, NS: time.Since(t).Nanoseconds()}); err != nil {
			return nil
		}
	}
}

func (s *server) onPrepare(c netpoll.Connection) context.Context {
	fd := -1
	if f, ok := c.(interface{ Fd() int }); ok {
		fd = f.Fd()
	}
	return context.WithValue(context.Background(), ctxKey{}, &conn{c: c, fd: fd, id: s.nextID.Add(1)})
}

type ctxKey struct{}

func (s *server) onRequest(ctx context.Context, c netpoll.Connection) error {
	cn, _ := ctx.Value(ctxKey{}).(*conn)
	r := c.Reader()
	defer func() { _ = r.Release() }()
	if cn == nil || cn.open.Load() {
		// Client frames (heartbeats) are not looked at; a close frame
		// ends the connection when the client closes the socket.
		return r.Skip(r.Len())
	}
	b, _ := r.Peek(r.Len())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 8192 {
			return c.Close()
		}
		return nil // wait for the rest of the head
	}
	head := b[:end+4]
	resp := handshake(head, cn.id)
	_ = r.Skip(r.Len())
	cn.mu.Lock()
	w := c.Writer()
	_, err := w.WriteBinary(resp)
	if err == nil {
		err = w.Flush()
	}
	cn.mu.Unlock()
	if err != nil {
		return c.Close()
	}
	cn.open.Store(true)
	s.mu.Lock()
	s.conns = append(s.conns, cn)
	s.mu.Unlock()
	return nil
}

// handshake builds the 101 response for head followed by the hello frame.
func handshake(head []byte, id int64) []byte {
	key := ""
	for _, l := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Key")) {
			key = string(bytes.TrimSpace(v))
		}
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n")
	return append(resp, TextFrame([]byte(`{"type":"hello","conn":`+strconv.FormatInt(id, 10)+`}`))...)
}

// TextFrame returns an unmasked, final WebSocket text frame.
func TextFrame(p []byte) []byte {
	var f []byte
	switch {
	case len(p) < 126:
		f = append(f, 0x81, byte(len(p)))
	case len(p) <= 0xffff:
		f = append(f, 0x81, 126, 0, 0)
		binary.BigEndian.PutUint16(f[2:], uint16(len(p)))
	default:
		f = append(f, 0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(f[2:], uint64(len(p)))
	}
	return append(f, p...)
}

// push writes frame to every open connection and returns how many took
// it and how many failed.
func (s *server) push(frame []byte) (int, int) {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	var (
		wg       sync.WaitGroup
		ok, fail atomic.Int64
	)
	for w := 0; w < s.cfg.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n, bad int64
			for i := w; i < len(conns); i += s.cfg.Writers {
				if s.write(conns[i], frame) != nil {
					bad++
				} else {
					n++
				}
			}
			ok.Add(n)
			fail.Add(bad)
		}()
	}
	wg.Wait()
	return int(ok.Load()), int(fail.Load())
}

var errShort = errors.New("short write")

func (s *server) write(cn *conn, frame []byte) error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if s.cfg.Write == WriteRaw {
		n, err := syscall.Write(cn.fd, frame)
		if err == nil && n != len(frame) {
			err = errShort
		}
		return err
	}
	w := cn.c.Writer()
	buf, err := w.Malloc(len(frame))
	if err != nil {
		return err
	}
	copy(buf, frame)
	return w.Flush()
}
