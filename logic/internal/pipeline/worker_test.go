package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client/callopt"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/logic/internal/dpfake"
	"github.com/gochat-im/gochat/logic/internal/routing"
	"github.com/gochat-im/gochat/logic/internal/users"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// heldProducer keeps delivery callbacks until the test releases them.
type heldProducer struct {
	mu      sync.Mutex
	held    []kafkax.Callback
	topics  []string
	failing int // fail this many deliveries first
}

func (p *heldProducer) ProduceTo(topic string, _ int32, _, _ []byte, cb kafkax.Callback) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = append(p.held, cb)
	p.topics = append(p.topics, topic)
	return nil
}

// release delivers the held callback i (failing it while p.failing > 0).
func (p *heldProducer) release(i int) {
	p.mu.Lock()
	cb := p.held[i]
	p.held[i] = nil
	var err error
	if p.failing > 0 {
		p.failing--
		err = errors.New("delivery failed")
	}
	p.mu.Unlock()
	if cb != nil {
		cb(err)
	}
}

func (p *heldProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

type offsetLog struct {
	mu     sync.Mutex
	stored []kafka.TopicPartition
}

func (o *offsetLog) StoreOffsets(tps []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stored = append(o.stored, tps...)
	return tps, nil
}

func (o *offsetLog) last() (kafka.Offset, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.stored) == 0 {
		return -1, 0
	}
	return o.stored[len(o.stored)-1].Offset, len(o.stored)
}

func upMsg(t *testing.T, off int64, cmid string) *kafka.Message {
	topic := kafkax.TopicUp
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(off)},
		Value: kafkax.Encode(sendRec("alice", "bob", cmid, "hi"))}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// newTestWorker returns a worker over dp's processor (gateway gw1 alive),
// with logs discarded.
func newTestWorker(dp *dpfake.DP, prod AsyncProducer, offs OffsetStore, maxBatch, maxInflight int) *worker {
	return newWorker(newProc(dp, liveSet{"gw1": true}, &fakeProducer{}), prod, offs, maxBatch, maxInflight,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// Offsets are stored only when every output of a batch is delivered, and
// batches retire in order even when a later one completes first.
func TestWorkerStoresOffsetsInOrder(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	prod := &heldProducer{}
	offs := &offsetLog{}
	w := newTestWorker(dp, prod, offs, 1, 4)
	ctx := context.Background()
	go w.run(ctx)

	w.dispatch(upMsg(t, 10, "a")) // batch 1: ack (+ offline task for bob)
	waitFor(t, "batch 1 outputs", func() bool { return prod.count() == 2 })
	w.dispatch(upMsg(t, 11, "b")) // batch 2
	waitFor(t, "batch 2 outputs", func() bool { return prod.count() == 4 })

	prod.release(2)
	prod.release(3) // batch 2 fully delivered, batch 1 not yet
	time.Sleep(20 * time.Millisecond)
	if off, _ := offs.last(); off != -1 {
		t.Fatalf("offset %d stored before batch 1 was delivered", off)
	}
	prod.release(0)
	time.Sleep(20 * time.Millisecond)
	if off, _ := offs.last(); off != -1 {
		t.Fatal("offset stored with one output of batch 1 outstanding")
	}
	prod.release(1)
	waitFor(t, "offsets", func() bool { off, _ := offs.last(); return off == 12 })
	if _, n := offs.last(); n != 2 {
		t.Fatalf("stored %d offsets, want 11 then 12", n)
	}
	if !w.drain(ctx) {
		t.Fatal("drain failed")
	}
}

// A failed delivery is produced again; the batch completes after the retry.
func TestWorkerRetriesFailedDelivery(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	prod := &heldProducer{failing: 1}
	offs := &offsetLog{}
	w := newTestWorker(dp, prod, offs, 8, 4)
	go w.run(context.Background())
	w.dispatch(upMsg(t, 5, "a"))
	waitFor(t, "outputs", func() bool { return prod.count() == 2 })
	prod.release(0) // fails: produced again as held[2]
	prod.release(1)
	waitFor(t, "retry", func() bool { return prod.count() == 3 })
	if off, _ := offs.last(); off != -1 {
		t.Fatal("offset stored while a delivery was being retried")
	}
	prod.release(2)
	waitFor(t, "offset", func() bool { off, _ := offs.last(); return off == 6 })
}

// A read receipt goes out only once the cursor it announces is stored, so
// a device that gets it finds the cursor in its conversation list; the
// batch's offset waits for both.
func TestWorkerSendsReceiptAfterCursorSave(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.Routes = []*common.Route{{Uid: "alice", Device: "d", GatewayId: "gw1", ConnId: 7}}
	prod := &heldProducer{}
	offs := &offsetLog{}
	w := newTestWorker(dp, prod, offs, 1, 4)
	ctx := context.Background()
	go w.run(ctx)
	w.dispatch(upMsg(t, 1, "a")) // alice -> bob: the ack (bob is offline: a task)
	waitFor(t, "send outputs", func() bool { return prod.count() == 2 })
	prod.release(0)
	prod.release(1)
	waitFor(t, "send offset", func() bool { off, _ := offs.last(); return off == 2 })

	dp.HoldCursors = make(chan struct{})
	read := rec(events.UpKind_READ, "bob", ids.P2P("alice", "bob"), 1)
	topic := kafkax.TopicUp
	w.dispatch(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: 2}, Value: kafkax.Encode(read)})
	time.Sleep(50 * time.Millisecond)
	if n := prod.count(); n != 2 {
		t.Fatalf("%d records produced while the cursor save was held, want none", n-2)
	}
	dp.HoldCursors <- struct{}{}
	waitFor(t, "receipt", func() bool { return prod.count() == 3 })
	if prod.topics[2] != kafkax.DownTopic("gw1") {
		t.Fatalf("receipt went to %s", prod.topics[2])
	}
	if off, _ := offs.last(); off != 2 {
		t.Fatal("offset stored before the receipt was delivered")
	}
	prod.release(2)
	waitFor(t, "read offset", func() bool { off, _ := offs.last(); return off == 3 })
}

// refusing is a dataproxy that refuses user or route lookups with a code
// retrying cannot mend.
type refusing struct {
	*dpfake.DP
	users, routes atomic.Bool
}

func (r *refusing) GetUsers(ctx context.Context, req *dataproxy.GetUsersReq, o ...callopt.Option) (*dataproxy.GetUsersResp, error) {
	if r.users.Load() {
		return nil, errcode.Biz(errcode.BadRequest, "too many users")
	}
	return r.DP.GetUsers(ctx, req, o...)
}

func (r *refusing) GetRoutes(ctx context.Context, req *dataproxy.GetRoutesReq, o ...callopt.Option) (*dataproxy.GetRoutesResp, error) {
	if r.routes.Load() {
		return nil, errcode.Biz(errcode.BadRequest, "too many users")
	}
	return r.DP.GetRoutes(ctx, req, o...)
}

// A lookup dataproxy refuses (retrying cannot mend it) neither stops the
// worker nor holds its partitions: the batch completes, answered as well
// as it can be, and so do the next ones.
func TestWorkerSurvivesRefusedLookups(t *testing.T) {
	dp := &refusing{DP: dpfake.New("alice", "bob")}
	dp.Routes = []*common.Route{{Uid: "bob", Device: "d", GatewayId: "gw1", ConnId: 3}}
	prod := &heldProducer{}
	offs := &offsetLog{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc := NewProcessor(dp, users.New(dp, time.Hour, 100), routing.New(dp, liveSet{"gw1": true}), &fakeProducer{}, NewMetrics(nil), log)
	w := newWorker(proc, prod, offs, 1, 4, log)
	go w.run(context.Background())
	deliverAll := func(from, want int) {
		t.Helper()
		waitFor(t, "outputs", func() bool { return prod.count() == want })
		time.Sleep(20 * time.Millisecond) // nothing more comes
		if n := prod.count(); n != want {
			t.Fatalf("%d outputs, want %d", n-from, want-from)
		}
		for i := from; i < want; i++ {
			prod.release(i)
		}
	}

	// The recipient check is refused: the sender gets the error, nothing
	// is stored.
	dp.users.Store(true)
	w.dispatch(upMsg(t, 1, "a"))
	deliverAll(0, 1)
	waitFor(t, "offset 2", func() bool { off, _ := offs.last(); return off == 2 })
	if dp.Appends != 0 {
		t.Fatal("a send whose recipient could not be checked was stored")
	}

	// The route lookup is refused: stored and acked, no push (bob learns
	// of it by his inbox cursor), an offline task as for a user offline.
	dp.users.Store(false)
	dp.routes.Store(true)
	dp.NoAppendRoutes = 1
	w.dispatch(upMsg(t, 2, "b"))
	deliverAll(1, 3)
	waitFor(t, "offset 3", func() bool { off, _ := offs.last(); return off == 3 })
	if prod.topics[1] != kafkax.DownTopic("gw1") || prod.topics[2] != kafkax.TopicTask {
		t.Fatalf("outputs went to %v, want the ack to gw1 and a task", prod.topics[1:])
	}

	// Lookups work again: so does the worker.
	dp.routes.Store(false)
	w.dispatch(upMsg(t, 3, "c"))
	deliverAll(3, 5) // the ack and bob's push
	waitFor(t, "offset 4", func() bool { off, _ := offs.last(); return off == 4 })
}

// A worker waiting for room among its in-flight batches (Kafka not
// acknowledging) stops when its context ends.
func TestWorkerAtInflightLimitStopsWithItsContext(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	w := newTestWorker(dp, &heldProducer{}, &offsetLog{}, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() { w.run(ctx); close(exited) }()
	w.dispatch(upMsg(t, 1, "a"))
	w.dispatch(upMsg(t, 2, "b")) // waits for the in-flight slot
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the worker still waits for an in-flight slot after its context ended")
	}
}

// Once a worker has stopped (dataproxy down past the grace period), the
// poll loop's dispatch returns instead of waiting for ever on its full
// queue; the records are not acknowledged.
func TestDispatchReturnsAfterWorkerStopped(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	dp.FailAppend = 1 << 30 // dataproxy down
	offs := &offsetLog{}
	w := newTestWorker(dp, &heldProducer{}, offs, 1, 4)
	ctx, cancel := context.WithCancel(context.Background())
	go w.run(ctx)
	dispatched := make(chan struct{})
	go func() {
		for i := range 5 { // more than the queue of 2 holds
			w.dispatch(upMsg(t, int64(i), fmt.Sprint("c", i)))
		}
		close(dispatched)
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-dispatched:
	case <-time.After(5 * time.Second):
		t.Fatal("dispatch still blocked after the worker stopped")
	}
	if off, _ := offs.last(); off != -1 {
		t.Fatalf("offset %d stored for records never handled", off)
	}
}

// drain reports unfinished work only when there is some: at shutdown the
// work context may already have ended with nothing pending, and logging
// "abandoned" then would be false.
func TestDrainReportsOnlyUnfinishedWork(t *testing.T) {
	dp := dpfake.New("alice", "bob")
	prod := &heldProducer{}
	w := newTestWorker(dp, prod, &offsetLog{}, 1, 4)
	go w.run(context.Background())
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if !w.drain(done) {
		t.Fatal("an idle worker reported unfinished work")
	}
	w.dispatch(upMsg(t, 1, "a"))
	waitFor(t, "outputs", func() bool { return prod.count() == 2 })
	if w.drain(done) {
		t.Fatal("a worker with undelivered outputs reported everything finished")
	}
	prod.release(0)
	prod.release(1)
	if !w.drain(context.Background()) {
		t.Fatal("drain failed after every output was delivered")
	}
}

// A batch larger than dataproxy takes in one call would be refused whole,
// and every send in it answered with an error: the consumer refuses to start.
func TestNewConsumerRefusesBatchOverDataproxyLimit(t *testing.T) {
	_, err := NewConsumer(ConsumerConfig{MaxBatch: dataproxy.MAX_BATCH + 1}, nil, nil, slog.Default())
	if err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Fatalf("NewConsumer with MaxBatch %d: %v, want a refusal naming the limit", dataproxy.MAX_BATCH+1, err)
	}
}
