package infra

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// newRedis starts miniredis's commands behind serveRedis on a loopback port.
func newRedis(t *testing.T) (*miniredis.Miniredis, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMiniredis()
	if err != nil {
		t.Fatal(err)
	}
	rl := serveRedis(m.Server(), l)
	t.Cleanup(func() {
		rl.Close()
		m.Close()
	})
	return m, l.Addr().String()
}

func resp(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{c: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, reqs ...string) {
	t.Helper()
	if _, err := io.WriteString(c.c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
}

// reply reads one reply, printed as fmt.Sprint prints it.
// sendAsync writes reqs from another goroutine (net.Pipe and large
// pipelines block the writer until the server reads); the error arrives on
// the channel.
func (c *client) sendAsync(reqs ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c.c, strings.Join(reqs, ""))
		done <- err
	}()
	return done
}

func (c *client) reply(t *testing.T) string {
	t.Helper()
	v, err := server.ParseReply(c.r)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v)
}

// A pipeline is answered completely and in order, including replies of
// many kinds, and works across reads (a pipeline larger than the server's
// read buffer).
func TestRedisPipeline(t *testing.T) {
	_, addr := newRedis(t)
	c := dial(t, addr)
	const n = 2000 // ~90 KiB of requests: several reads of the server's 16 KiB buffer
	var reqs []string
	for i := range n {
		reqs = append(reqs, resp("SET", fmt.Sprintf("k%d", i), strings.Repeat("v", 20)+fmt.Sprint(i)))
	}
	big := strings.Repeat("0123456789abcdef", 20<<10) // 320 KiB: read in pieces
	reqs = append(reqs, resp("SET", "big", big), resp("STRLEN", "big"))
	reqs = append(reqs, resp("HSET", "h", "a", "1", "b", "2"), resp("HGETALL", "h"), resp("ZADD", "z", "GT", "5", "s"), resp("ZSCORE", "z", "s"), resp("GET", "k1999"), resp("NOSUCHCMD"))
	sent := c.sendAsync(reqs...)
	for i := range n {
		if v := c.reply(t); v != "OK" {
			t.Fatalf("reply %d = %v", i, v)
		}
	}
	if v := c.reply(t); v != "OK" {
		t.Fatalf("SET big = %v", v)
	}
	if v := c.reply(t); v != fmt.Sprint(len(big)) {
		t.Fatalf("STRLEN big = %v, want %d", v, len(big))
	}
	want := []string{"2", "[a 1 b 2]", "1", "5", strings.Repeat("v", 20) + "1999"}
	for i, w := range want {
		if v := c.reply(t); v != w {
			t.Fatalf("reply %d = %q, want %q", n+2+i, v, w)
		}
	}
	// ParseReply returns an error reply as an error.
	if v, err := server.ParseReply(c.r); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command answered %v, %v", v, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// countingConn counts the writes of the server side.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// The replies to commands that arrive together leave in one write.
func TestRedisRepliesOfAPipelineShareAWrite(t *testing.T) {
	m, err := newMiniredis()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cli, srvSide := net.Pipe()
	sc := &countingConn{Conn: srvSide}
	done := make(chan struct{})
	go func() { serveRedisConn(m.Server(), sc); close(done) }()
	c := &client{c: cli, r: bufio.NewReader(cli)}
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))

	var reqs []string
	for i := range 10 {
		reqs = append(reqs, resp("INCR", "n"), resp("HSET", "h", fmt.Sprint(i), "x"))
	}
	sent := c.sendAsync(reqs...) // net.Pipe: one write, read by the server in one go
	for i := range 10 {
		if v := c.reply(t); v != fmt.Sprint(i+1) {
			t.Fatalf("INCR %d = %v", i, v)
		}
		if v := c.reply(t); v != "1" {
			t.Fatalf("HSET %d = %v", i, v)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if w := sc.writes.Load(); w != 1 {
		t.Fatalf("20 pipelined replies took %d writes, want 1", w)
	}
	_ = cli.Close()
	<-done
}

// QUIT is answered, then the connection closes.
func TestRedisQuit(t *testing.T) {
	_, addr := newRedis(t)
	c := dial(t, addr)
	c.send(t, resp("QUIT"), resp("PING"))
	if v := c.reply(t); v != "OK" {
		t.Fatalf("QUIT = %v", v)
	}
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("after QUIT: %v, want EOF", err)
	}
}

// A malformed request closes its connection and nothing else.
func TestRedisBadRequests(t *testing.T) {
	_, addr := newRedis(t)
	other := dial(t, addr)
	for _, bad := range []string{
		"PING\r\n",                              // inline commands are not supported
		"*x\r\n",                                // bad count
		"*1\r\n+PING\r\n",                       // not a bulk string
		"*1\r\n$4\r\nPINGxx",                    // bulk without its CRLF
		"*1\r\n$-1\r\n",                         // null argument
		"*1\r\n$999999999999\r\nPING",           // oversized bulk
		"*99999999\r\n$4\r\nPING\r\n",           // too many arguments
		"*1\r\n$4" + strings.Repeat("0", 20000), // endless length line
	} {
		c := dial(t, addr)
		c.send(t, bad)
		// EOF, or a reset when the server closed with input unread.
		if b, err := c.r.ReadByte(); err == nil {
			t.Fatalf("%.40q: read %q; want the connection closed", bad, b)
		} else if os.IsTimeout(err) {
			t.Fatalf("%.40q: still open", bad)
		}
	}
	// A long value cut short by the client closing its side ends the
	// connection (the server waits for the rest until then, as Redis does).
	c := dial(t, addr)
	c.send(t, "*2\r\n$3\r\nGET\r\n$1000000\r\nabc")
	if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := c.r.ReadByte(); err == nil || os.IsTimeout(err) {
		t.Fatalf("truncated value: read %q, %v; want the connection closed", b, err)
	}
	other.send(t, resp("PING"))
	if v := other.reply(t); v != "PONG" {
		t.Fatalf("PING on another connection = %v", v)
	}
}

// Published messages reach a subscriber, and a subscriber that disconnects
// is unsubscribed.
func TestRedisPubSub(t *testing.T) {
	m, addr := newRedis(t)
	sub := dial(t, addr)
	sub.send(t, resp("SUBSCRIBE", "ch"))
	if v := sub.reply(t); v != "[subscribe ch 1]" {
		t.Fatalf("SUBSCRIBE = %v", v)
	}
	pub := dial(t, addr)
	pub.send(t, resp("PUBLISH", "ch", "hello"))
	if v := pub.reply(t); v != "1" {
		t.Fatalf("PUBLISH reached %v subscribers, want 1", v)
	}
	if v := sub.reply(t); v != "[message ch hello]" {
		t.Fatalf("subscriber got %v", v)
	}
	_ = sub.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for m.PubSubNumSub("ch")["ch"] != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a closed subscriber is still subscribed: %v", m.PubSubNumSub("ch"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
