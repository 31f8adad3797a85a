package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/task/internal/backoff"
	"github.com/gochat-im/gochat/task/internal/consumer"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/offlinepush"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
)

// These tests run the real consumer (librdkafka through confluent-kafka-go)
// against an in-process Kafka-protocol broker (kfake) and an httptest
// webhook.

const taskPartitions = 8

type env struct {
	t       *testing.T
	brokers string
	group   string
	hook    *webhook
	dead    *kafkax.Producer
	log     *slog.Logger
	// deadLetterer, when set, replaces dead for the consumers started next.
	deadLetterer consumer.DeadLetterer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e := &env{
		t:       t,
		brokers: strings.Join(cluster.ListenAddrs(), ","),
		group:   fmt.Sprintf("task-test-%d", time.Now().UnixNano()),
		hook:    newWebhook(),
		log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	srv := httptest.NewServer(e.hook)
	t.Cleanup(srv.Close)
	e.hook.url = srv.URL

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkax.EnsureTopics(ctx, kafkax.Common{Brokers: e.brokers},
		kafkax.TopicSpec{Name: kafkax.TopicTask, Partitions: taskPartitions},
		kafkax.TopicSpec{Name: kafkax.TopicTaskDead, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	e.dead, err = kafkax.NewProducer(kafkax.Common{Brokers: e.brokers}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.dead.Close)
	return e
}

// webhook answers 500 for the uids in fail and 200 for the others; a uid in
// failOnce fails its first call only. It counts calls per idempotency key.
type webhook struct {
	url      string
	mu       sync.Mutex
	fail     map[string]bool
	failOnce map[string]bool
	calls    map[string]int // by Idempotency-Key
	ok       map[string]int // successful deliveries by key

	gate      chan struct{} // when set, calls wait until it is closed
	active    int           // calls being served now
	maxActive int           // the most calls served at once
}

func newWebhook() *webhook {
	return &webhook{fail: map[string]bool{}, failOnce: map[string]bool{}, calls: map[string]int{}, ok: map[string]int{}}
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p offlinepush.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get(offlinepush.HeaderIdempotencyKey)
	w.mu.Lock()
	w.active++
	w.maxActive = max(w.maxActive, w.active)
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done(): // the client gave up
		}
	}
	w.mu.Lock()
	w.active--
	w.calls[key]++
	failing := w.fail[p.UID] || (w.failOnce[p.UID] && w.calls[key] == 1)
	if !failing {
		w.ok[key]++
	}
	w.mu.Unlock()
	if failing {
		http.Error(rw, "push provider down", http.StatusInternalServerError)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

func (w *webhook) snapshot() (calls, ok map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	calls, ok = map[string]int{}, map[string]int{}
	for k, v := range w.calls {
		calls[k] = v
	}
	for k, v := range w.ok {
		ok[k] = v
	}
	return calls, ok
}

func key(uid string) string { return offlinepush.IdempotencyKey(pushRec(uid).OfflinePush) }

func pushRec(uid string) *events.TaskRecord {
	return &events.TaskRecord{Kind: events.TaskKind_OFFLINE_PUSH, OfflinePush: &events.OfflinePush{
		Uid: uid, ConvId: "p:alice:" + uid, Seq: 1, Sender: "alice", ContentType: "text", Preview: "hello", CreatedAtMs: 1,
	}}
}

// produce writes one task per uid to the given partition, in order, and
// waits for the broker to acknowledge them.
func (e *env) produce(partition int32, uids ...string) {
	e.t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "enable.idempotence": true, "linger.ms": 1})
	if err != nil {
		e.t.Fatal(err)
	}
	defer p.Close()
	topic := kafkax.TopicTask
	reports := make(chan kafka.Event, len(uids))
	for _, uid := range uids {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
			Key:            []byte(uid),
			Value:          kafkax.Encode(pushRec(uid)),
		}, reports)
		if err != nil {
			e.t.Fatal(err)
		}
	}
	for range uids {
		m := (<-reports).(*kafka.Message)
		if m.TopicPartition.Error != nil {
			e.t.Fatalf("produce: %v", m.TopicPartition.Error)
		}
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	m      *metrics.Metrics
}

func (e *env) start(cfg consumer.Config) *running {
	e.t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		e.t.Fatal(err)
	}
	push, err := offlinepush.New(offlinepush.Config{URL: e.hook.url, Timeout: 30 * time.Second}, m)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(push.Close)
	reg := job.NewRegistry()
	if err := reg.Register(events.TaskKind_OFFLINE_PUSH, push); err != nil {
		e.t.Fatal(err)
	}
	cfg.Kafka = kafkax.Common{Brokers: e.brokers, Extra: kafka.ConfigMap{"heartbeat.interval.ms": 300}}
	cfg.Group = e.group
	var dead consumer.DeadLetterer = e.dead
	if e.deadLetterer != nil {
		dead = e.deadLetterer
	}
	c, err := consumer.New(cfg, reg, dead, m, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), m: m}
	go func() { r.done <- c.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop shuts the consumer down gracefully and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("consumer did not stop")
	}
	r.done = nil
}

// eventually waits for cond; the timeout only guards against a hang.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// offsets reports, per task partition, the group's committed offset (-1 if
// none) and the partition's end.
func (e *env) offsets() (committed, end []int64) {
	e.t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.group})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	topic := kafkax.TopicTask
	var tps []kafka.TopicPartition
	for p := int32(0); p < taskPartitions; p++ {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p})
	}
	got, err := c.Committed(tps, 10000)
	if err != nil {
		e.t.Fatalf("committed: %v", err)
	}
	committed = make([]int64, taskPartitions)
	end = make([]int64, taskPartitions)
	for _, tp := range got {
		committed[tp.Partition] = int64(tp.Offset) // OffsetInvalid (-1001) when none
		if tp.Offset < 0 {
			committed[tp.Partition] = -1
		}
	}
	for p := int32(0); p < taskPartitions; p++ {
		_, hi, err := c.QueryWatermarkOffsets(topic, p, 10000)
		if err != nil {
			e.t.Fatalf("watermarks: %v", err)
		}
		end[p] = hi
	}
	return committed, end
}

// deadLetters reads every record of the dead-letter topic.
func (e *env) deadLetters() []*kafka.Message {
	e.t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.group + "-dlq-reader",
		"enable.auto.commit": false})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	topic := kafkax.TopicTaskDead
	_, hi, err := c.QueryWatermarkOffsets(topic, 0, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	if hi == 0 {
		return nil
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		e.t.Fatal(err)
	}
	var out []*kafka.Message
	deadline := time.Now().Add(20 * time.Second)
	for int64(len(out)) < hi && time.Now().Before(deadline) {
		if m, ok := c.Poll(100).(*kafka.Message); ok && m.TopicPartition.Error == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestConsumerEndToEnd: one task fails always and the rest succeed. The
// others are delivered while the failing one retries (including the ones
// behind it in its partition), the failing one ends in the dead-letter topic
// with attempts == MaxAttempts, the group's offsets reach the end of every
// partition, and a restarted consumer redoes nothing.
//
// At-least-once allowances: this test stops the consumer gracefully, which
// finishes or abandons every task and commits before leaving, so it expects
// no redelivery at all. After a crash instead, the tasks finished since the
// last auto-commit (1 s) and any finished task sitting behind an unfinished
// one in its partition are delivered again; receivers deduplicate on the
// Idempotency-Key. The dead-letter topic gets the same allowance.
func TestConsumerEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.hook.fail["bad"] = true
	const maxAttempts = 4

	// The failing task goes first in partition 0, so the good tasks behind
	// it in the same partition prove a retry does not block its partition.
	e.produce(0, "bad", "p0-a", "p0-b", "p0-c")
	var good = []string{"p0-a", "p0-b", "p0-c"}
	for p := int32(1); p < taskPartitions; p++ {
		uids := []string{fmt.Sprintf("p%d-a", p), fmt.Sprintf("p%d-b", p)}
		e.produce(p, uids...)
		good = append(good, uids...)
	}

	cfg := consumer.Config{
		Workers: 4, MaxInflight: 64, MaxAttempts: maxAttempts,
		Backoff:       backoff.Policy{Base: 300 * time.Millisecond, Max: 2 * time.Second},
		ShutdownGrace: 10 * time.Second,
	}
	first := e.start(cfg)

	allGood := func() bool {
		_, ok := e.hook.snapshot()
		for _, uid := range good {
			if ok[key(uid)] == 0 {
				return false
			}
		}
		return true
	}
	eventually(t, 60*time.Second, "every good task delivered", allGood)
	calls, _ := e.hook.snapshot()
	// The attempts of the failing task are spaced by at least
	// 150+300+600 ms, while the good ones need a few milliseconds.
	if calls[key("bad")] >= maxAttempts {
		t.Fatalf("the failing task already made %d attempts when the others were delivered", calls[key("bad")])
	}
	if committed, _ := e.offsets(); committed[0] > 0 {
		t.Fatalf("partition 0 committed at %d while its first task is still retrying", committed[0])
	}

	eventually(t, 60*time.Second, "the dead-letter record", func() bool { return len(e.deadLetters()) == 1 })
	dl := e.deadLetters()[0]
	var rec events.TaskRecord
	if err := kafkax.Decode(dl.Value, &rec); err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != "bad" || rec.OfflinePush.GetUid() != "bad" || rec.Attempts != maxAttempts || !strings.Contains(rec.LastError, "500") {
		t.Fatalf("dead-letter record key %q: %+v", dl.Key, &rec)
	}
	calls, _ = e.hook.snapshot()
	if calls[key("bad")] != maxAttempts {
		t.Fatalf("failing task called %d times, want %d", calls[key("bad")], maxAttempts)
	}

	// Offsets are committed once every record is done: within an
	// auto-commit interval while running, and at shutdown for sure.
	eventually(t, 30*time.Second, "offsets committed to the end", func() bool {
		committed, end := e.offsets()
		for p := range end {
			if committed[p] != end[p] {
				return false
			}
		}
		return true
	})
	first.stop(t)
	committed, end := e.offsets()
	for p := range end {
		if committed[p] != end[p] {
			t.Fatalf("after shutdown partition %d committed %d, end %d", p, committed[p], end[p])
		}
	}

	// Restart: only the new task is delivered.
	second := e.start(cfg)
	e.produce(0, "after-restart")
	eventually(t, 60*time.Second, "the task produced after the restart", func() bool {
		_, ok := e.hook.snapshot()
		return ok[key("after-restart")] == 1
	})
	second.stop(t)

	calls, ok := e.hook.snapshot()
	for _, uid := range append(good, "after-restart") {
		if calls[key(uid)] != 1 || ok[key(uid)] != 1 {
			t.Errorf("%s: %d calls, %d successful, want exactly 1", uid, calls[key(uid)], ok[key(uid)])
		}
	}
	if calls[key("bad")] != maxAttempts {
		t.Errorf("failing task redone: %d calls", calls[key("bad")])
	}
	if n := len(e.deadLetters()); n != 1 {
		t.Errorf("%d dead-letter records, want 1", n)
	}
	committed, end = e.offsets()
	for p := range end {
		if committed[p] != end[p] {
			t.Errorf("after restart partition %d committed %d, end %d", p, committed[p], end[p])
		}
	}
}

// TestConsumerRebalanceLosesNothing moves partitions between two consumers
// while tasks are waiting for retries: a second consumer joins, then the
// first leaves with a short grace period that abandons what it still had.
// Every task must still be delivered (at least once) and every partition
// committed to its end, with nothing dead-lettered.
func TestConsumerRebalanceLosesNothing(t *testing.T) {
	e := newEnv(t)
	var uids []string
	for p := int32(0); p < taskPartitions; p++ {
		var batch []string
		for i := 0; i < 5; i++ {
			uid := fmt.Sprintf("r%d-%d", p, i)
			e.hook.failOnce[uid] = true // every task needs a retry
			batch = append(batch, uid)
		}
		e.produce(p, batch...)
		uids = append(uids, batch...)
	}
	cfg := consumer.Config{
		Workers: 4, MaxInflight: 16, MaxAttempts: 10,
		Backoff:       backoff.Policy{Base: 400 * time.Millisecond, Max: time.Second},
		ShutdownGrace: 200 * time.Millisecond,
	}
	a := e.start(cfg)
	eventually(t, 60*time.Second, "first attempts", func() bool {
		calls, _ := e.hook.snapshot()
		return len(calls) >= 4
	})
	b := e.start(cfg)
	time.Sleep(500 * time.Millisecond) // let the group rebalance while retries wait
	a.stop(t)

	eventually(t, 90*time.Second, "every task delivered", func() bool {
		_, ok := e.hook.snapshot()
		for _, uid := range uids {
			if ok[key(uid)] == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, 30*time.Second, "offsets committed to the end", func() bool {
		committed, end := e.offsets()
		for p := range end {
			if committed[p] != end[p] {
				return false
			}
		}
		return true
	})
	b.stop(t)
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d tasks dead-lettered", n)
	}
}

// TestConsumerMaxInflight: with more workers than max-inflight and a
// webhook that holds every call, no more than max-inflight tasks are ever
// taken; fetching pauses, and resumes when they finish.
func TestConsumerMaxInflight(t *testing.T) {
	e := newEnv(t)
	const maxInflight = 3
	gate := make(chan struct{})
	e.hook.gate = gate
	var uids []string
	for i := 0; i < 20; i++ {
		uids = append(uids, fmt.Sprint("m", i))
	}
	e.produce(0, uids[:10]...)
	e.produce(5, uids[10:]...)

	r := e.start(consumer.Config{Workers: 8, MaxInflight: maxInflight, MaxAttempts: 3,
		Backoff: backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second}})
	active := func() int {
		e.hook.mu.Lock()
		defer e.hook.mu.Unlock()
		return e.hook.active
	}
	eventually(t, 60*time.Second, "max-inflight calls waiting", func() bool { return active() == maxInflight })
	eventually(t, 10*time.Second, "fetching paused", func() bool { return testutil.ToFloat64(r.m.Paused) == 1 })
	// Several poll rounds later, still no more than the bound.
	time.Sleep(time.Second)
	if n := active(); n != maxInflight {
		t.Fatalf("%d calls in progress, bound is %d", n, maxInflight)
	}
	close(gate)
	eventually(t, 60*time.Second, "every task delivered", func() bool {
		_, ok := e.hook.snapshot()
		for _, uid := range uids {
			if ok[key(uid)] == 0 {
				return false
			}
		}
		return true
	})
	r.stop(t)
	e.hook.mu.Lock()
	defer e.hook.mu.Unlock()
	if e.hook.maxActive > maxInflight {
		t.Fatalf("%d calls at once, bound is %d", e.hook.maxActive, maxInflight)
	}
	if testutil.ToFloat64(r.m.InFlight) != 0 {
		t.Fatalf("in flight %v after stop", testutil.ToFloat64(r.m.InFlight))
	}
}

// rebalanceLog is a slog handler that records the partitions a consumer
// logs as assigned and revoked, and passes warnings and errors to stderr.
type rebalanceLog struct {
	next slog.Handler
	mu   *sync.Mutex
	evs  *[]rebalanceEvent
}

type rebalanceEvent struct {
	assigned   bool // false: revoked
	partitions []int32
}

func newRebalanceLog() *rebalanceLog {
	return &rebalanceLog{next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}),
		mu: &sync.Mutex{}, evs: &[]rebalanceEvent{}}
}

func (l *rebalanceLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *rebalanceLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "partitions assigned" || r.Message == "partitions revoked" {
		ev := rebalanceEvent{assigned: r.Message == "partitions assigned"}
		r.Attrs(func(a slog.Attr) bool {
			if ids, ok := a.Value.Any().([]int32); ok && a.Key == "partitions" {
				ev.partitions = append([]int32(nil), ids...)
			}
			return true
		})
		l.mu.Lock()
		*l.evs = append(*l.evs, ev)
		l.mu.Unlock()
	}
	if !l.next.Enabled(ctx, r.Level) {
		return nil
	}
	return l.next.Handle(ctx, r)
}

func (l *rebalanceLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.next = l.next.WithAttrs(as)
	return &c
}

func (l *rebalanceLog) WithGroup(name string) slog.Handler {
	c := *l
	c.next = l.next.WithGroup(name)
	return &c
}

// owned returns the partitions the consumer holds according to its log.
func (l *rebalanceLog) owned() map[int32]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int32]bool{}
	for _, ev := range *l.evs {
		for _, p := range ev.partitions {
			if ev.assigned {
				out[p] = true
			} else {
				delete(out, p)
			}
		}
	}
	return out
}

// TestConsumerPartitionReturnsAfterPause: a consumer paused at max-inflight
// loses partitions to a second consumer, resumes fetching for what it kept,
// and gets the partitions back when the second consumer leaves. librdkafka
// keeps a partition's pause flag across revocation and assignment, so the
// returning partitions must be resumed explicitly; records produced to them
// afterwards must be delivered.
func TestConsumerPartitionReturnsAfterPause(t *testing.T) {
	e := newEnv(t)
	gate := make(chan struct{})
	e.hook.gate = gate
	var first []string
	for p := int32(0); p < taskPartitions; p++ {
		uid := fmt.Sprintf("first%d", p)
		e.produce(p, uid)
		first = append(first, uid)
	}
	cfg := consumer.Config{Workers: 8, MaxInflight: 2, MaxAttempts: 3,
		Backoff: backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second}, ShutdownGrace: 5 * time.Second}
	logA, logB := newRebalanceLog(), newRebalanceLog()
	e.log = slog.New(logA)
	a := e.start(cfg)
	eventually(t, 60*time.Second, "A paused at max-inflight", func() bool { return testutil.ToFloat64(a.m.Paused) == 1 })
	if n := len(logA.owned()); n != taskPartitions {
		t.Fatalf("A owns %d partitions, want all %d", n, taskPartitions)
	}

	// B joins while A is paused: A gives up part of its partitions.
	e.log = slog.New(logB)
	cfgB := cfg
	cfgB.MaxInflight = 100
	b := e.start(cfgB)
	eventually(t, 60*time.Second, "B owns partitions", func() bool { return len(logB.owned()) > 0 })
	eventually(t, 30*time.Second, "A gave them up", func() bool { return len(logA.owned()) < taskPartitions })

	// A's tasks finish and it resumes fetching for what it kept.
	close(gate)
	eventually(t, 60*time.Second, "every first task delivered", func() bool {
		_, ok := e.hook.snapshot()
		for _, u := range first {
			if ok[key(u)] == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, 30*time.Second, "A resumed", func() bool { return testutil.ToFloat64(a.m.Paused) == 0 })

	// B leaves: its partitions come back to A, which is not paused.
	b.stop(t)
	eventually(t, 60*time.Second, "A owns every partition again", func() bool { return len(logA.owned()) == taskPartitions })
	var after []string
	for p := int32(0); p < taskPartitions; p++ {
		u := fmt.Sprintf("after%d", p)
		e.produce(p, u)
		after = append(after, u)
	}
	// Delivered within a second or so; the timeout is what a partition
	// left paused shows as.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, ok := e.hook.snapshot()
		var missing []string
		for _, u := range after {
			if ok[key(u)] == 0 {
				missing = append(missing, u)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never delivered after their partitions came back to A: %v", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flakyDead fails dead-letter writes while failing is set and passes them
// to next otherwise.
type flakyDead struct {
	next    consumer.DeadLetterer
	failing atomic.Bool
	fails   atomic.Int64
}

func (f *flakyDead) Produce(topic string, key, value []byte, cb kafkax.Callback) error {
	if f.failing.Load() {
		f.fails.Add(1)
		return errors.New("dead-letter topic unavailable")
	}
	return f.next.Produce(topic, key, value, cb)
}

// readiness records what a consumer reports through OnReady.
type readiness struct {
	mu  sync.Mutex
	got []bool
}

func (r *readiness) set(ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ok)
}

func (r *readiness) history() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.got...)
}

// TestConsumerNotReadyWhileDeadLetterStuck: a task whose dead-letter write
// keeps failing makes the consumer report not ready once the failures reach
// DeadLetterStuckAfter, holds its partition's offset and is still retried;
// when the dead-letter topic works again the record is written, the offset
// moves on and the consumer is ready again.
func TestConsumerNotReadyWhileDeadLetterStuck(t *testing.T) {
	e := newEnv(t)
	e.hook.fail["bad"] = true
	dead := &flakyDead{next: e.dead}
	dead.failing.Store(true)
	e.deadLetterer = dead
	e.produce(0, "bad", "p0-a")
	var ready readiness
	r := e.start(consumer.Config{Workers: 2, MaxInflight: 16, MaxAttempts: 1, DeadLetterStuckAfter: 3,
		Backoff: backoff.Policy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, OnReady: ready.set})
	eventually(t, 60*time.Second, "not ready", func() bool {
		h := ready.history()
		return len(h) == 2 && h[0] && !h[1]
	})
	if n := dead.fails.Load(); n < 3 {
		t.Fatalf("not ready after %d failed dead-letter writes, want 3", n)
	}
	if g := testutil.ToFloat64(r.m.DeadStuck); g != 1 {
		t.Fatalf("dead_letter_stuck %v, want 1", g)
	}
	// Still retried; the partition's offset stays before the task.
	before := dead.fails.Load()
	eventually(t, 10*time.Second, "more retries", func() bool { return dead.fails.Load() >= before+3 })
	if committed, _ := e.offsets(); committed[0] > 0 {
		t.Fatalf("partition 0 committed at %d past the task being dead-lettered", committed[0])
	}

	dead.failing.Store(false)
	eventually(t, 30*time.Second, "the dead-letter record", func() bool { return len(e.deadLetters()) == 1 })
	eventually(t, 10*time.Second, "ready again", func() bool { return len(ready.history()) == 3 })
	eventually(t, 30*time.Second, "partition 0 committed to its end", func() bool {
		committed, end := e.offsets()
		return committed[0] == end[0]
	})
	r.stop(t)
	if h := ready.history(); fmt.Sprint(h) != "[true false true false]" {
		t.Fatalf("readiness reported %v, want [true false true false]", h)
	}
	if g := testutil.ToFloat64(r.m.DeadStuck); g != 0 {
		t.Fatalf("dead_letter_stuck %v after the write, want 0", g)
	}
}

// Negative settings are refused rather than used.
func TestConsumerRefusesNegativeConfig(t *testing.T) {
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*consumer.Config){
		"workers":                 func(c *consumer.Config) { c.Workers = -1 },
		"max-inflight":            func(c *consumer.Config) { c.MaxInflight = -1 },
		"max-attempts":            func(c *consumer.Config) { c.MaxAttempts = -1 },
		"retry base":              func(c *consumer.Config) { c.Backoff.Base = -time.Millisecond },
		"retry max":               func(c *consumer.Config) { c.Backoff.Max = -time.Second },
		"shutdown grace":          func(c *consumer.Config) { c.ShutdownGrace = -time.Second },
		"poll interval":           func(c *consumer.Config) { c.PollInterval = -time.Millisecond },
		"dead-letter stuck after": func(c *consumer.Config) { c.DeadLetterStuckAfter = -1 },
	} {
		cfg := consumer.Config{Kafka: kafkax.Common{Brokers: "127.0.0.1:1"}}
		mod(&cfg)
		if _, err := consumer.New(cfg, job.NewRegistry(), &flakyDead{}, m, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("negative %s: error %v, want one naming it", name, err)
		}
	}
}
