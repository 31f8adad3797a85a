package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/task/internal/backoff"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
	"github.com/gochat-im/gochat/task/internal/offsets"
	"github.com/prometheus/client_golang/prometheus"
)

// DeadLetterer writes one record to a topic and reports the outcome once
// through cb, which must be called without blocking on the dispatcher.
// *kafkax.Producer satisfies it.
type DeadLetterer interface {
	Produce(topic string, key, value []byte, cb kafkax.Callback) error
}

// OffsetStorer stores next as the position of a partition (the offset of
// the next record to consume), to be committed later. It is called with the
// dispatcher's lock held, so it must be quick and must not call back into
// the dispatcher. The consumer's implementation calls librdkafka's
// StoreOffsets.
type OffsetStorer func(topic string, partition int32, next int64) error

// DispatcherConfig sizes the dispatcher.
type DispatcherConfig struct {
	// Workers is the number of goroutines running attempts of each job
	// kind: every kind has a queue and workers of its own, so a slow or
	// failing job (a push webhook timing out) does not hold up the
	// others (moderation's recalls, the archive).
	Workers int
	// MaxAttempts is the number of handler attempts before a task goes to
	// the dead-letter topic.
	MaxAttempts int
	// Backoff spaces the attempts of one task (and retries of a failed
	// dead-letter write). Its Base must be more than 0.
	Backoff backoff.Policy
	// DeadTopic receives the tasks that failed for good.
	DeadTopic string
	// StuckAfter is the number of failed dead-letter writes of one task
	// after which the task counts as stuck (Stuck, the dead_letter_stuck
	// gauge) and each failure is logged at Error rather than Warn. A stuck
	// task is still retried, never dropped. 0 means DefaultStuckAfter.
	StuckAfter int
}

// DefaultStuckAfter is the default DispatcherConfig.StuckAfter. With the
// service's default backoff (200 ms doubling up to 30 s, with jitter) the
// waits between ten failed writes add up to 40-80 s, plus the time each
// write takes to fail.
const DefaultStuckAfter = 10

// maxLastError bounds the error text copied into a dead-letter record.
const maxLastError = 1024

// Dispatcher runs consumed tasks: a fixed pool of workers per job kind
// makes attempts,
// failed attempts wait on a timer (no goroutine sleeps per task), tasks
// that fail for good are written to the dead-letter topic, and each
// finished task releases its offset through a per-partition tracker so the
// stored position only ever covers finished records.
//
// Submit, Assign and Revoke are called by the consumer's poll goroutine;
// everything else runs on workers, timers and the dead-letter producer's
// callbacks. mu guards the partition table, the trackers and the timer
// sets; offsets are stored while holding it, which is what makes "revoked"
// final: once Revoke returns, no offset of that partition is stored again.
type Dispatcher struct {
	cfg   DispatcherConfig
	reg   *job.Registry
	dead  DeadLetterer
	store OffsetStorer
	m     *metrics.Metrics
	log   *slog.Logger

	// queues holds one ready queue per job name (job.Registry.Names, so
	// job.UnknownKind too), each with cfg.Workers workers; fixed at
	// construction.
	queues   map[string]*queue
	inflight atomic.Int64
	stuck    atomic.Int64
	workers  sync.WaitGroup
	stop     sync.Once

	mu    sync.Mutex
	parts map[partKey]*partition
}

// NewDispatcher starts cfg.Workers workers.
func NewDispatcher(cfg DispatcherConfig, reg *job.Registry, dead DeadLetterer, store OffsetStorer, m *metrics.Metrics, log *slog.Logger) (*Dispatcher, error) {
	switch {
	case cfg.Workers < 1:
		return nil, fmt.Errorf("dispatcher: workers %d, want at least 1", cfg.Workers)
	case cfg.MaxAttempts < 1:
		return nil, fmt.Errorf("dispatcher: max attempts %d, want at least 1", cfg.MaxAttempts)
	case cfg.Backoff.Base <= 0 || cfg.Backoff.Max < 0:
		// A zero delay would retry failures in a tight loop.
		return nil, fmt.Errorf("dispatcher: backoff base %v and max %v, want a base above 0 and a max not below 0", cfg.Backoff.Base, cfg.Backoff.Max)
	case cfg.StuckAfter < 0:
		return nil, fmt.Errorf("dispatcher: stuck after %d dead-letter failures, want at least 0", cfg.StuckAfter)
	case cfg.DeadTopic == "":
		return nil, errors.New("dispatcher: no dead-letter topic")
	case reg == nil || dead == nil || store == nil || m == nil:
		return nil, errors.New("dispatcher: missing dependency")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = DefaultStuckAfter
	}
	d := &Dispatcher{cfg: cfg, reg: reg, dead: dead, store: store, m: m, log: log,
		queues: map[string]*queue{}, parts: map[partKey]*partition{}}
	for _, name := range reg.Names() {
		q := newQueue()
		d.queues[name] = q
		for range cfg.Workers {
			d.workers.Add(1)
			go d.work(q)
		}
	}
	return d, nil
}

// push queues t for an attempt (or its dead-letter write) with the
// workers of its kind; false once the dispatcher is closed.
func (d *Dispatcher) push(t *task) bool {
	q := d.queues[t.kind]
	if q == nil {
		q = d.queues[job.UnknownKind]
	}
	return q.push(t)
}

// Inflight is the number of tasks submitted and not yet finished or
// abandoned.
func (d *Dispatcher) Inflight() int { return int(d.inflight.Load()) }

// Stuck is the number of tasks whose dead-letter write has failed
// cfg.StuckAfter times or more and is still being retried. Their
// partitions' offsets cannot move past them until the write succeeds.
func (d *Dispatcher) Stuck() int { return int(d.stuck.Load()) }

// Assign starts tracking a partition the consumer was given. Offsets of
// its records are stored from now until Revoke.
func (d *Dispatcher) Assign(topic string, id int32) {
	k := partKey{topic, id}
	d.mu.Lock()
	old := d.parts[k]
	d.mu.Unlock()
	if old != nil {
		d.Revoke(topic, id) // assigned twice without a revocation: start over
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &partition{key: k, ctx: ctx, cancel: cancel, track: offsets.NewPartition(), waiting: map[*task]struct{}{}}
	d.mu.Lock()
	d.parts[k] = p
	d.mu.Unlock()
}

// Revoke abandons a partition: its running attempts are cancelled, its
// retry timers stopped, and none of its offsets is stored any more. The
// records come back to whichever consumer gets the partition next, from
// the last committed offset.
func (d *Dispatcher) Revoke(topic string, id int32) {
	k := partKey{topic, id}
	d.mu.Lock()
	p := d.parts[k]
	if p == nil {
		d.mu.Unlock()
		return
	}
	delete(d.parts, k)
	p.revoked.Store(true)
	p.cancel()
	sleepers := make([]*task, 0, len(p.waiting))
	for t := range p.waiting {
		t.timer.Stop()
		sleepers = append(sleepers, t)
	}
	clear(p.waiting)
	pending := p.track.Pending()
	d.mu.Unlock()
	// A timer that fired concurrently finds its task gone from waiting and
	// does nothing, so these are released exactly once.
	for _, t := range sleepers {
		d.abandon(t)
	}
	if pending > 0 {
		d.log.Info("partition revoked with unfinished tasks; they will be redone", "topic", topic, "partition", id, "unfinished", pending)
	}
}

// AbandonAll revokes every partition, at shutdown once the grace period
// is over.
func (d *Dispatcher) AbandonAll() {
	d.mu.Lock()
	keys := make([]partKey, 0, len(d.parts))
	for k := range d.parts {
		keys = append(keys, k)
	}
	d.mu.Unlock()
	for _, k := range keys {
		d.Revoke(k.topic, k.id)
	}
}

// Close stops the workers once the queue is empty and waits for them. Call
// AbandonAll first, or tasks still in flight will be abandoned as they
// come back to the queue.
func (d *Dispatcher) Close() {
	d.stop.Do(func() {
		for _, q := range d.queues {
			q.close()
		}
	})
	d.workers.Wait()
}

// Submit hands a consumed record to the workers. Records of a partition
// must be submitted in offset order. It returns false, and does nothing,
// for a partition that is not assigned.
func (d *Dispatcher) Submit(topic string, id int32, offset int64, key, value []byte) bool {
	d.mu.Lock()
	p := d.parts[partKey{topic, id}]
	if p == nil {
		d.mu.Unlock()
		return false
	}
	if err := p.track.Add(offset); err != nil {
		// Only a redelivery of a record already tracked gets here; the
		// first copy is the one that counts.
		d.mu.Unlock()
		d.log.Debug("record ignored", "topic", topic, "partition", id, "offset", offset, "err", err)
		return true
	}
	d.mu.Unlock()

	t := &task{part: p, offset: offset, key: key, value: value, kind: job.UnknownKind}
	rec := events.NewTaskRecord()
	if err := kafkax.Decode(value, rec); err != nil {
		t.lastErr = fmt.Errorf("decode task record: %w", err)
	} else {
		t.rec = rec
		if h, name, ok := d.reg.Lookup(rec.Kind); ok {
			t.handler, t.kind = h, name
		} else {
			t.lastErr = fmt.Errorf("no job for task kind %d", int64(rec.Kind))
		}
	}
	d.inflight.Add(1)
	d.m.InFlight.Inc()
	if !d.push(t) {
		d.abandon(t)
	}
	return true
}

func (d *Dispatcher) work(q *queue) {
	defer d.workers.Done()
	for {
		t, ok := q.pop()
		if !ok {
			return
		}
		d.run(t)
	}
}

// run makes the next step of t and passes it on.
func (d *Dispatcher) run(t *task) {
	if t.part.revoked.Load() {
		d.abandon(t)
		return
	}
	if t.dead || t.handler == nil {
		d.deadLetter(t)
		return
	}
	t.attempts++
	err := t.handler.Handle(t.part.ctx, t.rec)
	switch {
	case err == nil:
		d.finish(t, d.m.Processed)
	case errors.Is(err, job.ErrSkipped):
		d.finish(t, d.m.Skipped)
	case t.part.ctx.Err() != nil:
		// Revoked during the attempt: the failure is ours, not the job's.
		d.abandon(t)
	case job.IsPermanent(err) || t.attempts >= d.cfg.MaxAttempts:
		t.lastErr = err
		d.deadLetter(t)
	default:
		t.lastErr = err
		d.m.Retried.WithLabelValues(t.kind).Inc()
		delay := max(d.cfg.Backoff.Delay(t.attempts), job.RetryAfterHint(err))
		if d.cfg.Backoff.Max > 0 {
			delay = min(delay, d.cfg.Backoff.Max)
		}
		d.log.Debug("task attempt failed; will retry", "kind", t.kind, "partition", t.part.key.id, "offset", t.offset,
			"attempt", t.attempts, "delay", delay, "err", err)
		d.later(t, delay)
	}
}

// later puts t back on the queue after delay, unless its partition is
// revoked meanwhile.
func (d *Dispatcher) later(t *task, delay time.Duration) {
	d.mu.Lock()
	if t.part.revoked.Load() {
		d.mu.Unlock()
		d.abandon(t)
		return
	}
	t.part.waiting[t] = struct{}{}
	// The callback takes mu, so it cannot see t.timer unset.
	t.timer = time.AfterFunc(delay, func() { d.wake(t) })
	d.mu.Unlock()
}

func (d *Dispatcher) wake(t *task) {
	d.mu.Lock()
	_, ok := t.part.waiting[t]
	delete(t.part.waiting, t)
	d.mu.Unlock()
	if !ok {
		return // Revoke took it
	}
	if !d.push(t) {
		d.abandon(t)
	}
}

// deadLetter writes t to the dead-letter topic with the attempts made and
// the last error; the offset is released only when the broker has the
// record.
func (d *Dispatcher) deadLetter(t *task) {
	t.dead = true
	reason := "unknown error"
	if t.lastErr != nil {
		reason = t.lastErr.Error()
	}
	if len(reason) > maxLastError {
		reason = strings.ToValidUTF8(reason[:maxLastError], "")
	}
	value := t.value // a record that did not decode is kept byte for byte
	if t.rec != nil {
		out := *t.rec
		out.Attempts = int32(t.attempts)
		out.LastError = reason
		value = kafkax.Encode(&out)
	}
	if t.deadTries == 0 {
		d.log.Warn("task failed for good; writing it to the dead-letter topic", "kind", t.kind,
			"partition", t.part.key.id, "offset", t.offset, "attempts", t.attempts, "err", reason)
	}
	if err := d.dead.Produce(d.cfg.DeadTopic, t.key, value, func(err error) { d.deadDone(t, err) }); err != nil {
		d.deadDone(t, err)
	}
}

func (d *Dispatcher) deadDone(t *task, err error) {
	if err == nil {
		d.finish(t, d.m.DeadLettered)
		return
	}
	d.m.DeadErrors.Inc()
	t.deadTries++
	delay := d.cfg.Backoff.Delay(t.deadTries)
	if t.deadTries < d.cfg.StuckAfter {
		d.log.Warn("dead-letter write failed; will retry", "kind", t.kind, "partition", t.part.key.id, "offset", t.offset,
			"failures", t.deadTries, "delay", delay, "err", err)
	} else {
		// The task is kept and retried: dropping it would lose it. Its
		// partition's offset stays behind it until a write succeeds.
		if !t.stuck {
			t.stuck = true
			d.stuck.Add(1)
			d.m.DeadStuck.Inc()
		}
		d.log.Error("dead-letter write keeps failing; the task is retried and its partition's offset waits for it",
			"kind", t.kind, "partition", t.part.key.id, "offset", t.offset, "failures", t.deadTries, "delay", delay, "err", err)
	}
	d.later(t, delay)
}

// finish releases a task whose work is done and stores the partition's
// position if that completed a prefix of its records.
func (d *Dispatcher) finish(t *task, outcome *prometheus.CounterVec) {
	d.mu.Lock()
	if !t.part.revoked.Load() {
		if next, ok := t.part.track.Done(t.offset); ok {
			if err := d.store(t.part.key.topic, t.part.key.id, next); err != nil {
				d.m.StoreErrors.Inc()
				d.log.Warn("store offset", "topic", t.part.key.topic, "partition", t.part.key.id, "offset", next, "err", err)
			}
		}
	}
	d.mu.Unlock()
	outcome.WithLabelValues(t.kind).Inc()
	d.release(t)
}

// abandon drops an unfinished task without storing its offset.
func (d *Dispatcher) abandon(t *task) {
	d.m.Abandoned.WithLabelValues(t.kind).Inc()
	d.release(t)
}

// release ends t's time in flight, finished or abandoned.
func (d *Dispatcher) release(t *task) {
	if t.stuck {
		t.stuck = false
		d.stuck.Add(-1)
		d.m.DeadStuck.Dec()
	}
	d.inflight.Add(-1)
	d.m.InFlight.Dec()
}
