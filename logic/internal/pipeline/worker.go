package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// AsyncProducer queues a record and reports its delivery later (a
// *kafkax.Producer).
type AsyncProducer interface {
	// ProduceTo writes to partition, or where key maps for
	// kafka.PartitionAny.
	ProduceTo(topic string, partition int32, key, value []byte, cb kafkax.Callback) error
}

// OffsetStore records that messages are fully handled (the Kafka consumer).
type OffsetStore interface {
	StoreOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
}

// worker handles the upstream partitions mapped to it, one batch at a time,
// in partition order. It does not wait for Kafka to acknowledge a batch's
// outputs before starting the next: librdkafka keeps records to one
// partition in the order they were produced, so seq order holds, and the
// Kafka round trip is taken off the per-message latency. A batch's offsets
// are stored once all its outputs are acknowledged, and batches are retired
// in order, so a stored offset never passes a record whose work is
// unfinished.
type worker struct {
	proc    *Processor
	prod    AsyncProducer
	offsets OffsetStore
	log     *slog.Logger
	in      chan *kafka.Message
	max     int

	// exited is closed when run returns: dispatch then drops records (they
	// are not acknowledged, so whoever owns the partitions next replays
	// them) instead of blocking the poll loop for ever.
	exited chan struct{}

	mu       sync.Mutex
	cond     *sync.Cond
	inflight []*batch // oldest first
	limit    int
	queued   int // records dispatched and not yet handled
}

// batch is one group of records whose outputs are being produced.
type batch struct {
	offsets []kafka.TopicPartition
	pending atomic.Int64
}

func newWorker(proc *Processor, prod AsyncProducer, offsets OffsetStore, maxBatch, maxInflight int, log *slog.Logger) *worker {
	w := &worker{proc: proc, prod: prod, offsets: offsets, log: log, in: make(chan *kafka.Message, maxBatch*2), max: maxBatch, limit: maxInflight,
		exited: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// dispatch hands m to the worker; it blocks while the worker's queue is
// full, which in turn pauses polling. Once the worker has stopped (its
// context ended) m is dropped unacknowledged.
func (w *worker) dispatch(m *kafka.Message) {
	w.mu.Lock()
	w.queued++
	w.mu.Unlock()
	select {
	case w.in <- m:
	case <-w.exited:
		w.mu.Lock()
		w.queued--
		w.mu.Unlock()
	}
}

// run handles records from w.in until it is closed or ctx ends.
func (w *worker) run(ctx context.Context) {
	defer close(w.exited)
	// A worker waiting for room among its in-flight batches wakes when
	// ctx ends (failed produces stop being retried then, so nothing else
	// would wake it).
	defer context.AfterFunc(ctx, w.wake)()
	msgs := make([]*kafka.Message, 0, w.max)
	for {
		msgs = msgs[:0]
		m, ok := <-w.in
		if !ok {
			return
		}
		msgs = append(msgs, m)
	fill:
		for len(msgs) < w.max {
			select {
			case m, ok := <-w.in:
				if !ok {
					break fill
				}
				msgs = append(msgs, m)
			default:
				break fill
			}
		}
		if !w.handle(ctx, msgs) {
			return
		}
	}
}

// handle prepares one batch and queues its outputs; false means ctx ended.
func (w *worker) handle(ctx context.Context, msgs []*kafka.Message) bool {
	w.mu.Lock()
	for len(w.inflight) >= w.limit && ctx.Err() == nil {
		w.cond.Wait()
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.queued -= len(msgs)
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
	if ctx.Err() != nil {
		return false
	}

	recs := make([]*events.UpRecord, 0, len(msgs))
	for _, m := range msgs {
		rec := &events.UpRecord{}
		if err := kafkax.Decode(m.Value, rec); err != nil {
			// It can never succeed: skip it (its offset is still stored).
			w.log.Error("undecodable upstream record skipped", "partition", m.TopicPartition.Partition, "offset", m.TopicPartition.Offset, "err", err)
			continue
		}
		recs = append(recs, rec)
	}
	w.proc.m.batchSize.Observe(float64(len(recs)))
	prep, err := w.proc.Prepare(ctx, recs)
	if err != nil {
		// ctx ended mid-batch (Prepare fails for nothing else): nothing of
		// it is acknowledged; whoever owns the partitions next replays it.
		return false
	}
	b := &batch{offsets: nextOffsets(msgs)}
	// One count per output, one for the cursor save (which adds its
	// receipts' before releasing it), one released below once everything
	// is queued.
	b.pending.Store(int64(len(prep.Msgs)) + 2)
	w.mu.Lock()
	w.inflight = append(w.inflight, b)
	w.mu.Unlock()
	// The cursor save runs beside the produce (merged with other batches'
	// saves); the read receipts, which announce the saved cursors (built
	// from the save's answer), and the batch's offsets wait for it. If ctx
	// ends first the batch never completes and is replayed (cursor updates
	// are idempotent). The receipts are queued from the cursor saver's
	// callbacks, which run in save order, so one (user, conversation)'s
	// receipts keep their order. Queuing blocks only while librdkafka's
	// local queue is full, when every produce of this process waits anyway.
	w.proc.saveCursorsAsync(ctx, prep, func(receipts []kafkax.Msg, err error) {
		if err != nil {
			return
		}
		b.pending.Add(int64(len(receipts)))
		for _, o := range receipts {
			w.produce(ctx, b, o, 0)
		}
		w.done(b)
	})
	for _, o := range prep.Msgs {
		w.produce(ctx, b, o, 0)
	}
	w.done(b)
	return true
}

// produce queues one output; a failed delivery is produced again with
// backoff until it succeeds or ctx ends. (A retried push may then arrive
// after a later one of its conversation; clients see the gap and sync,
// which is always complete.)
func (w *worker) produce(ctx context.Context, b *batch, o kafkax.Msg, attempt int) {
	err := w.prod.ProduceTo(o.Topic, o.To(), o.Key, o.Value, func(err error) {
		if err == nil {
			w.done(b)
			return
		}
		w.retryLater(ctx, b, o, attempt+1, err)
	})
	if err != nil {
		w.retryLater(ctx, b, o, attempt+1, err)
	}
}

func (w *worker) retryLater(ctx context.Context, b *batch, o kafkax.Msg, attempt int, err error) {
	if ctx.Err() != nil {
		return // the batch never completes; its offsets are not stored
	}
	if attempt == 1 || attempt%20 == 0 {
		w.log.Warn("produce failed; retrying", "topic", o.Topic, "attempt", attempt, "err", err)
	}
	delay := min(time.Duration(attempt)*50*time.Millisecond, 2*time.Second)
	time.AfterFunc(delay, func() { w.produce(ctx, b, o, attempt) })
}

// done counts one finished output of b and retires completed batches in
// order, storing their offsets.
func (w *worker) done(b *batch) {
	if b.pending.Add(-1) > 0 {
		return
	}
	w.mu.Lock()
	var ready []kafka.TopicPartition
	for len(w.inflight) > 0 && w.inflight[0].pending.Load() == 0 {
		ready = append(ready, w.inflight[0].offsets...)
		w.inflight = w.inflight[1:]
	}
	if len(ready) > 0 {
		if _, err := w.offsets.StoreOffsets(ready); err != nil {
			w.log.Warn("store offsets", "err", err)
		}
		w.cond.Broadcast()
	}
	w.mu.Unlock()
}

// wake wakes every goroutine waiting on w.cond (to see that a context
// ended).
func (w *worker) wake() {
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// drain waits until no batch is being prepared or produced, or ctx ends;
// it reports whether nothing was left unfinished.
func (w *worker) drain(ctx context.Context) bool {
	defer context.AfterFunc(ctx, w.wake)()
	w.mu.Lock()
	defer w.mu.Unlock()
	for (w.queued > 0 || len(w.inflight) > 0) && ctx.Err() == nil {
		w.cond.Wait()
	}
	return w.queued == 0 && len(w.inflight) == 0
}

// nextOffsets returns, per partition, the offset after the last message.
func nextOffsets(msgs []*kafka.Message) []kafka.TopicPartition {
	last := map[int32]kafka.TopicPartition{}
	for _, m := range msgs {
		tp := m.TopicPartition
		if cur, ok := last[tp.Partition]; !ok || tp.Offset+1 > cur.Offset {
			tp.Offset++
			tp.Error = nil
			last[tp.Partition] = tp
		}
	}
	out := make([]kafka.TopicPartition, 0, len(last))
	for _, tp := range last {
		out = append(out, tp)
	}
	return out
}
