package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/gochat-im/gochat/gateway/internal/conntable"
	"github.com/gochat-im/gochat/gateway/internal/downstream"
	"github.com/gochat-im/gochat/gateway/internal/upgrade"
	"github.com/gochat-im/gochat/pkg/ids"
)

// maxCursorBatch is the most users logic.Cursors accepts in one call, and
// maxRegisterBatch the most connections logic.Connect accepts.
const (
	maxCursorBatch   = 1000
	maxRegisterBatch = 1000
)

// maxRegisterFlush bounds Config.RegisterFlush.
const maxRegisterFlush = time.Second

// DefaultWriteQueueBytes is the default of Config.WriteQueueBytes: room
// for a few full sync pages (200 messages of 4 KiB are about 850 KB) or
// thousands of pushes, while one client that does not read holds no more
// than about that much (plus one frame) until it is disconnected.
const DefaultWriteQueueBytes = 4 << 20

// DefaultMaxRecord is librdkafka's default message.max.bytes, the default
// of Config.MaxRecord.
const DefaultMaxRecord = 1000000

// RecordOverhead is the room MaxBody must leave in MaxRecord for the rest
// of a send's upstream record: its key (the conversation id) and its other
// fields (ids of at most 64 bytes, the content type, numbers), about 700
// bytes in Thrift binary, and librdkafka's per-record framing (under 64
// bytes), with a margin.
const RecordOverhead = 2048

// The range of Config.WriteQueueBytes: the session counts in 32 bits.
const (
	minWriteQueueBytes = 64 << 10
	maxWriteQueueBytes = 1 << 30
)

// Config is the server's configuration. Zero fields take the defaults
// listed; Validate fills them in and checks the rest.
type Config struct {
	// ID names this gateway instance (routes, downstream topic).
	ID string
	// Listen is the host:port of the WebSocket listener.
	Listen string
	// Path is the WebSocket path; default "/ws".
	Path string
	// Shards is the connection table's shard count, a power of two;
	// default 64.
	Shards int
	// Heartbeat is advertised to clients in hello; default 30 s.
	Heartbeat time.Duration
	// IdleTimeout closes connections silent for this long; default 3x
	// Heartbeat. It also bounds how long registration with logic may take.
	IdleTimeout time.Duration
	// HandshakeTimeout drops connections that have not upgraded in time;
	// default 5 s.
	HandshakeTimeout time.Duration
	// CloseGrace is how long a closing connection may take to flush its
	// close frame before it is dropped; default 5 s.
	CloseGrace time.Duration
	// WriteTimeout bounds one blocked flush to a client; default 10 s.
	WriteTimeout time.Duration
	// MaxFrame limits a frame's payload and a reassembled message; default
	// 65536.
	MaxFrame int
	// MaxBody limits a sent message body; default 4096. A send becomes
	// one upstream Kafka record, so MaxBody must leave room in MaxRecord
	// for the record's other fields (RecordOverhead).
	MaxBody int
	// MaxRecord is the largest upstream Kafka record the producer takes:
	// its message.max.bytes; default 1,000,000, librdkafka's default.
	// librdkafka refuses a larger record in the produce call itself.
	MaxRecord int
	// MaxHead limits the HTTP request head; default 8 KiB.
	MaxHead int
	// MsgRate is the most messages per second one connection may send;
	// more are answered with a rate_limited error and dropped. Default
	// 1000, generous on purpose: it stops floods, not chatty clients.
	// Negative disables the limit.
	MsgRate int
	// Workers is the most goroutines calling logic (sync, conversations,
	// group operations, the cursors of pings); default 64. RPCQueue is
	// how many such requests may wait; default 4096 (more get an
	// "unavailable" error frame).
	Workers  int
	RPCQueue int
	// RPCTimeout bounds one call to logic; default 5 s.
	RPCTimeout time.Duration
	// CursorDelay is how long a JSON ping waits for others to share its
	// logic.Cursors call; default 2 ms. CursorBatch is the most pings
	// per call (so at most as many users); default 500, at most 1000
	// (logic's limit).
	CursorDelay time.Duration
	CursorBatch int
	// Writers is the most goroutines flushing write queues; default 1024.
	// Four per CPU do the work; the rest start only while others are
	// blocked on clients that do not read (see internal/workpool), so this
	// is how many such clients the gateway tolerates at once before pushes
	// to everyone else wait.
	Writers int
	// WriteQueue is how many frames may wait for one connection before it
	// counts as too slow; default 256. WriteQueueBytes bounds the bytes
	// waiting for it, in its queue and in netpoll's output buffer
	// together; default 4 MiB, at least 64 KiB, at most 1 GiB. Either
	// bound only counts while the client's socket is backed up: a queue
	// that fills while the socket takes everything is written by the
	// goroutine queuing to it (session.Session.Send).
	WriteQueue      int
	WriteQueueBytes int
	// RouteRefresh is the interval of full route re-registration; default
	// 30 s; negative disables it.
	RouteRefresh time.Duration
	// RegisterFlush and RegisterBatch shape Connect batches; defaults 5 ms
	// and 500. RegisterFlush is at most maxRegisterFlush.
	RegisterFlush time.Duration
	RegisterBatch int
	// SweepInterval is how often handshaking connections are checked for
	// the handshake timeout; default 1 s.
	SweepInterval time.Duration
	// IdleSweep is how often authenticated connections are checked for
	// the idle timeout (and closing ones for CloseGrace); default
	// IdleTimeout/16, between SweepInterval and 5 s. A pass over a million
	// connections costs about 0.2 s of CPU, so it is not done every second.
	IdleSweep time.Duration
}

// Validate fills in defaults and checks the configuration.
func (c *Config) Validate() error {
	if !ids.ValidDevice(c.ID) {
		return fmt.Errorf("gateway id %q: want 1-64 characters of [A-Za-z0-9_.@-]", c.ID)
	}
	if c.Listen == "" {
		return errors.New("listen address is empty")
	}
	if c.Path == "" {
		c.Path = "/ws"
	}
	if c.Shards == 0 {
		c.Shards = 64
	}
	if err := conntable.ValidShards(c.Shards); err != nil {
		return err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Heartbeat, 30*time.Second)
	def(&c.IdleTimeout, 3*c.Heartbeat)
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.CloseGrace, 5*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.RPCTimeout, 5*time.Second)
	def(&c.CursorDelay, 2*time.Millisecond)
	def(&c.RouteRefresh, 30*time.Second)
	def(&c.RegisterFlush, 5*time.Millisecond)
	def(&c.SweepInterval, time.Second)
	if c.IdleSweep == 0 {
		c.IdleSweep = min(max(c.IdleTimeout/16, c.SweepInterval), 5*time.Second)
	}
	if c.RouteRefresh < 0 {
		c.RouteRefresh = 0
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&c.MaxFrame, 65536)
	defInt(&c.MaxBody, 4096)
	defInt(&c.MaxRecord, DefaultMaxRecord)
	defInt(&c.MaxHead, upgrade.DefaultMaxHead)
	defInt(&c.Workers, 64)
	defInt(&c.RPCQueue, 4096)
	defInt(&c.Writers, 1024)
	defInt(&c.WriteQueue, 256)
	defInt(&c.WriteQueueBytes, DefaultWriteQueueBytes)
	defInt(&c.RegisterBatch, 500)
	defInt(&c.MsgRate, 1000)
	defInt(&c.CursorBatch, 500)
	for name, d := range map[string]time.Duration{
		"heartbeat": c.Heartbeat, "idle timeout": c.IdleTimeout, "handshake timeout": c.HandshakeTimeout,
		"close grace": c.CloseGrace, "write timeout": c.WriteTimeout, "rpc timeout": c.RPCTimeout,
		"sweep interval": c.SweepInterval, "cursor delay": c.CursorDelay, "register flush": c.RegisterFlush,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	if c.RegisterFlush > maxRegisterFlush {
		// Every new connection waits this long before its Connect call,
		// and so before its hello.
		return fmt.Errorf("register flush %v: want at most %v", c.RegisterFlush, maxRegisterFlush)
	}
	if c.IdleTimeout < c.Heartbeat {
		return fmt.Errorf("idle timeout %v is shorter than the heartbeat %v", c.IdleTimeout, c.Heartbeat)
	}
	for name, n := range map[string]int{
		"max frame": c.MaxFrame, "max body": c.MaxBody, "max head": c.MaxHead, "workers": c.Workers,
		"rpc queue": c.RPCQueue, "writers": c.Writers, "write queue": c.WriteQueue, "register batch": c.RegisterBatch,
	} {
		if n <= 0 {
			return fmt.Errorf("%s must be positive, got %d", name, n)
		}
	}
	if c.WriteQueue < downstream.MinWriteQueue {
		// A smaller queue is correct but makes the fan-out write to the
		// socket itself every few frames (see downstream.MinWriteQueue).
		return fmt.Errorf("write queue %d: want at least %d", c.WriteQueue, downstream.MinWriteQueue)
	}
	if c.WriteQueueBytes < minWriteQueueBytes || c.WriteQueueBytes > maxWriteQueueBytes {
		return fmt.Errorf("write queue bytes %d: want %d to %d", c.WriteQueueBytes, minWriteQueueBytes, maxWriteQueueBytes)
	}
	if c.RegisterBatch > maxRegisterBatch {
		return fmt.Errorf("register batch %d: want 1-%d", c.RegisterBatch, maxRegisterBatch)
	}
	if c.CursorBatch < 1 || c.CursorBatch > maxCursorBatch {
		return fmt.Errorf("cursor batch %d: want 1-%d", c.CursorBatch, maxCursorBatch)
	}
	if c.MaxFrame < 126 {
		return fmt.Errorf("max frame %d is below 126 bytes", c.MaxFrame)
	}
	if c.MaxBody > c.MaxFrame {
		return fmt.Errorf("max body %d exceeds max frame %d", c.MaxBody, c.MaxFrame)
	}
	if c.MaxBody > c.MaxRecord-RecordOverhead {
		// The producer would refuse every such send (too_large), though
		// hello advertises it as acceptable.
		return fmt.Errorf("max body %d does not fit in one Kafka record: message.max.bytes %d leaves room for a body of at most %d bytes (raise message.max.bytes in -kafka-config, and the brokers' and topics' limits, or lower -max-body)",
			c.MaxBody, c.MaxRecord, max(c.MaxRecord-RecordOverhead, 0))
	}
	return nil
}
