package infra

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// The embedded Redis runs miniredis's commands behind a connection loop of
// our own. miniredis's loop flushes the reply of every command with its own
// socket write and hands each command from a reader goroutine to a
// dispatcher goroutine; a pipeline of n commands (dataproxy sends its route
// reads and inbox updates as pipelines) then costs n writes and 2n
// goroutine switches. Here one goroutine reads, runs and answers commands,
// and the replies are flushed when the loop is about to wait for more input:
// one write per pipeline, as a real Redis server does.

// Limits on a request, as a real server has (proto-max-bulk-len): a bad
// length fails the connection instead of allocating what it says.
const (
	maxRedisArgs     = 1 << 20
	maxRedisBulkSize = 512 << 20
)

var errRedisProtocol = errors.New("redis protocol error")

// newMiniredis returns a miniredis with its commands registered and no
// listener of its own: Dial starts it that way (the pipe it returns is not
// needed). serveRedis serves its Server().
func newMiniredis() (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	c, err := m.Dial()
	if err != nil {
		return nil, err
	}
	_ = c.Close()
	return m, nil
}

// redisListener accepts connections and serves them with srv's commands.
type redisListener struct {
	srv *server.Server
	l   net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func serveRedis(srv *server.Server, l net.Listener) *redisListener {
	rl := &redisListener{srv: srv, l: l, conns: map[net.Conn]struct{}{}}
	rl.wg.Add(1)
	go rl.accept()
	return rl
}

func (rl *redisListener) accept() {
	defer rl.wg.Done()
	for {
		c, err := rl.l.Accept()
		if err != nil {
			return
		}
		rl.mu.Lock()
		if rl.conns == nil { // closed
			rl.mu.Unlock()
			_ = c.Close()
			return
		}
		rl.conns[c] = struct{}{}
		rl.wg.Add(1)
		rl.mu.Unlock()
		go func() {
			defer rl.wg.Done()
			serveRedisConn(rl.srv, c)
			rl.mu.Lock()
			delete(rl.conns, c)
			rl.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and waits for their loops.
func (rl *redisListener) Close() {
	_ = rl.l.Close()
	rl.mu.Lock()
	for c := range rl.conns {
		_ = c.Close()
	}
	rl.conns = nil
	rl.mu.Unlock()
	rl.wg.Wait()
}

// flushBeforeRead flushes the replies written so far before the loop blocks
// for input: whatever was read has been answered by then.
type flushBeforeRead struct {
	c    net.Conn
	peer *server.Peer
}

func (f flushBeforeRead) Read(p []byte) (int, error) {
	f.peer.Flush()
	return f.c.Read(p)
}

// serveRedisConn serves one connection until it closes, sends a bad
// request or asks to QUIT.
func serveRedisConn(srv *server.Server, c net.Conn) {
	defer c.Close()
	peer := server.NewPeer(bufio.NewWriterSize(c, 16<<10))
	r := bufio.NewReaderSize(flushBeforeRead{c: c, peer: peer}, 16<<10)
	subscribed := false
	defer func() {
		peer.Close()
		if subscribed {
			// miniredis removes a subscriber in a disconnect hook only its
			// own loop can run; unsubscribing from everything does the same
			// (the replies go nowhere: the connection is closed).
			srv.Dispatch(peer, []string{"UNSUBSCRIBE"})
			srv.Dispatch(peer, []string{"PUNSUBSCRIBE"})
		}
	}()
	for {
		args, err := readRedisCommand(r)
		if err != nil {
			return
		}
		if len(args) == 0 {
			continue // "*0" or "*-1": nothing to run, as on Redis
		}
		if !subscribed {
			switch strings.ToUpper(args[0]) {
			case "SUBSCRIBE", "PSUBSCRIBE":
				subscribed = true
			}
		}
		srv.Dispatch(peer, args)
		if peer.Closed() { // QUIT
			peer.Flush()
			return
		}
	}
}

// readRedisCommand reads one request: a RESP array of bulk strings, the
// form every client library sends.
func readRedisCommand(r *bufio.Reader) ([]string, error) {
	n, err := readRedisLen(r, '*', maxRedisArgs)
	if err != nil || n <= 0 {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		size, err := readRedisLen(r, '$', maxRedisBulkSize)
		if err != nil {
			return nil, err
		}
		if size < 0 {
			return nil, errRedisProtocol
		}
		buf, err := readRedisBulk(r, size+2)
		if err != nil {
			return nil, err
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			return nil, errRedisProtocol
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// readRedisBulk reads n bytes. Up to 64 KiB it allocates them at once;
// a longer value grows its buffer as its bytes arrive, so a length that
// promises much and sends little does not reserve the memory it names.
func readRedisBulk(r *bufio.Reader, n int) ([]byte, error) {
	if n <= 64<<10 {
		buf := make([]byte, n)
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// readRedisLen reads a "<kind><int>\r\n" line; -1 is allowed (a null).
func readRedisLen(r *bufio.Reader, kind byte, max int) (int, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, errRedisProtocol
		}
		return 0, err
	}
	if len(line) < 4 || line[0] != kind || line[len(line)-2] != '\r' {
		return 0, errRedisProtocol
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < -1 || n > max {
		return 0, errRedisProtocol
	}
	return n, nil
}
