package kafkax

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []rec
}

type rec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	x := rec{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { x.attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, x)
	h.mu.Unlock()
	return nil
}

// matching returns the records for which f is true.
func (h *recorder) matching(f func(rec) bool) []rec {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []rec
	for _, r := range h.recs {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits up to d for a record for which f is true.
func (h *recorder) waitFor(t *testing.T, d time.Duration, what string, f func(rec) bool) rec {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := h.matching(f); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatalf("no %s logged within %s; got %d records", what, d, len(h.matching(func(rec) bool { return true })))
	return rec{}
}

// librdkafkaFrom matches a forwarded librdkafka line of a client whose
// name starts with prefix.
func librdkafkaFrom(prefix string) func(rec) bool {
	return func(r rec) bool {
		return r.msg == logMsg && strings.HasPrefix(r.attrs["client"], prefix) && r.attrs["tag"] != "" && r.attrs["message"] != ""
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// forwarders counts the goroutines forwarding a client's logs.
func forwarders() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("kafkax.forwardLogs("))
}

func waitNoForwarders(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); forwarders() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d log forwarding goroutine(s) still running after the clients were closed", forwarders())
		}
	}
}

// captureStderr redirects file descriptor 2, where librdkafka writes its
// own log lines, until the returned function is called; that returns what
// was written.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, r); close(done) }()
	return func() string {
		_ = syscall.Dup3(saved, 2, 0)
		syscall.Close(saved)
		w.Close()
		<-done
		r.Close()
		return out.String()
	}
}

func TestSlogLevel(t *testing.T) {
	want := map[int]slog.Level{
		0: slog.LevelError, 1: slog.LevelError, 2: slog.LevelError, 3: slog.LevelError,
		4: slog.LevelWarn, 5: slog.LevelInfo, 6: slog.LevelInfo, 7: slog.LevelDebug,
	}
	for l, w := range want {
		if g := slogLevel(l); g != w {
			t.Errorf("syslog level %d: %v, want %v", l, g, w)
		}
	}
}

// A Producer's librdkafka lines (here: the refused connection) reach its
// slog logger, not stderr, and the goroutine forwarding them ends with
// Close.
func TestProducerLogsGoToSlog(t *testing.T) {
	addr := closedPort(t)
	h := &recorder{}
	stderr := captureStderr(t)
	pr, err := NewProducer(Common{Brokers: addr}, slog.New(h))
	if err != nil {
		stderr()
		t.Fatal(err)
	}
	// Asks for a connection (no message: Close would wait 5 s to flush it).
	topic := "t"
	_, _ = pr.p.GetMetadata(&topic, false, 300)
	r := h.waitFor(t, 10*time.Second, "producer FAIL line", func(r rec) bool {
		return librdkafkaFrom("rdkafka#producer-")(r) && r.attrs["tag"] == "FAIL"
	})
	pr.Close()
	raw := stderr()
	if r.level != slog.LevelError || !strings.Contains(r.attrs["message"], addr) {
		t.Errorf("FAIL line: level %v, message %q", r.level, r.attrs["message"])
	}
	if strings.Contains(raw, "|FAIL|") {
		t.Errorf("librdkafka still wrote to stderr:\n%s", raw)
	}
	waitNoForwarders(t)
}

// A consumer that another package creates with kafka.NewConsumer from
// ConsumerConfig (as logic, gateway and task do) logs to slog.Default()
// through the shared channel; one made with NewConsumer logs to its own
// logger, and its forwarding goroutine ends with Close.
func TestConsumerLogsGoToSlog(t *testing.T) {
	addr := closedPort(t)
	def := &recorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(def))
	defer slog.SetDefault(old)
	common := Common{Brokers: addr}

	stderr := captureStderr(t)
	m := common.ConsumerConfig("g")
	c1, err := kafka.NewConsumer(&m)
	if err != nil {
		stderr()
		t.Fatal(err)
	}
	own := &recorder{}
	c2, err := NewConsumer(common.ConsumerConfig("g"), slog.New(own))
	if err != nil {
		stderr()
		t.Fatal(err)
	}
	topic := "t"
	_, _ = c1.GetMetadata(&topic, false, 300)
	_, _ = c2.GetMetadata(&topic, false, 300)
	r1 := def.waitFor(t, 10*time.Second, "kafka.NewConsumer line on slog.Default()", librdkafkaFrom("rdkafka#consumer-"))
	r2 := own.waitFor(t, 10*time.Second, "NewConsumer line on its logger", librdkafkaFrom("rdkafka#consumer-"))
	if r1.attrs["client"] == r2.attrs["client"] {
		t.Errorf("both consumers' lines carry client %q", r1.attrs["client"])
	}
	if n := def.matching(func(r rec) bool { return r.attrs["client"] == r2.attrs["client"] }); len(n) > 0 {
		t.Errorf("NewConsumer's lines also went to slog.Default(): %v", n)
	}
	_ = c1.Close()
	_ = c2.Close()
	if raw := stderr(); strings.Contains(raw, "|FAIL|") {
		t.Errorf("librdkafka still wrote to stderr:\n%s", raw)
	}
	waitNoForwarders(t)
}

// go.logs.channel.enable=false in -kafka-config gives librdkafka its
// stderr back: no client gets a logs channel, and the config is accepted
// (confluent-kafka-go refuses a string "false", so ParseConfig types it).
func TestLogsChannelCanBeTurnedOff(t *testing.T) {
	extra, err := ParseConfig("go.logs.channel.enable=false,go.events.channel.size=5000")
	if err != nil {
		t.Fatal(err)
	}
	if extra["go.logs.channel.enable"] != false || extra["go.events.channel.size"] != 5000 {
		t.Fatalf("ParseConfig did not type confluent-kafka-go's properties: %#v", extra)
	}
	c := Common{Brokers: closedPort(t), Extra: extra}
	for _, m := range []kafka.ConfigMap{c.ProducerConfig(), c.ConsumerConfig("g")} {
		if m["go.logs.channel.enable"] != false || m["go.logs.channel"] != nil {
			t.Errorf("config with logs turned off: enable %v, channel %v", m["go.logs.channel.enable"], m["go.logs.channel"])
		}
	}
	pr, err := NewProducer(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pr.p.Logs() != nil {
		t.Error("the producer has a logs channel")
	}
	pr.Close()
	kc, err := NewConsumer(c.ConsumerConfig("g"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if kc.Logs() != nil {
		t.Error("the consumer has a logs channel")
	}
	_ = kc.Close()
	for _, bad := range []string{"go.logs.channel.enable=maybe", "go.produce.channel.size=lots", "go.logs.channel=x"} {
		if _, err := ParseConfig(bad); err == nil {
			t.Errorf("ParseConfig accepted %q", bad)
		}
	}
	// By default every config turns the channel on.
	d := Common{Brokers: "127.0.0.1:1"}
	if d.ProducerConfig()["go.logs.channel.enable"] != true || !isShared(d.ConsumerConfig("g")["go.logs.channel"]) {
		t.Error("default configs do not send librdkafka's lines to the shared channel")
	}
	if _, set := d.producerConfig()["go.logs.channel"]; set {
		t.Error("the Producer's own config names the shared channel")
	}
}

// Against a broker nobody listens on, EnsureTopics warns after each
// attempt, naming the brokers, and its error names the brokers and the
// refused connection instead of only "context deadline exceeded".
func TestEnsureTopicsUnreachableBroker(t *testing.T) {
	addr := closedPort(t)
	h := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	err := EnsureTopicsWith(ctx, Common{Brokers: addr}, EnsureOptions{Log: slog.New(h), AttemptTimeout: time.Second},
		TopicSpec{Name: "gochat.task", Partitions: 1})
	took := time.Since(start)
	if err == nil {
		t.Fatal("EnsureTopics succeeded without a broker")
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the error does not wrap the context's: %v", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(strings.ToLower(err.Error()), "refused") {
		t.Errorf("the error names neither the broker nor the refused connection: %v", err)
	}
	if took > 6*time.Second {
		t.Errorf("EnsureTopics took %s with a 4 s deadline", took)
	}
	warns := h.matching(func(r rec) bool {
		return r.level == slog.LevelWarn && r.attrs["brokers"] == addr && r.attrs["err"] != ""
	})
	if len(warns) < 2 {
		t.Errorf("%d warnings naming the brokers in 4 s of 1 s attempts, want 2 or more", len(warns))
	}
	for _, w := range warns {
		t.Logf("warning: %s %v", w.msg, w.attrs)
	}
	if len(h.matching(librdkafkaFrom("rdkafka#producer-"))) == 0 {
		t.Error("the admin client's librdkafka lines were not logged")
	}
	waitNoForwarders(t)
}
