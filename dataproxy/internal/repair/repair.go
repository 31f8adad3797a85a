// Package repair deletes Redis keys that may have gone stale because an
// update of them failed.
//
// The dataproxy keeps caches in Redis (inbox cursors, users' conversation
// and group sets, group route sets) that are updated after the SQL commit
// they describe. When such an update fails (Redis unreachable, a timeout),
// the commit stands and the call succeeds, but the cached value may now be
// wrong. Deleting the key makes the next reader rebuild it from SQL (or, for
// route sets, the next route refresh rewrite it), so the queue keeps the
// keys of failed updates and deletes them as soon as Redis answers. Each key
// is deleted twice, one interval apart, so that a rebuild that read SQL
// before the failed commit and wrote afterwards is removed too.
//
// The queue is bounded: past MaxKeys, new keys are dropped (counted and
// logged); their caches then heal when they expire.
//
// Concurrency: a Queue is safe for concurrent use; one goroutine, started
// by New and stopped by Close, does the deleting.
package repair

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultInterval = time.Second
	DefaultMaxKeys  = 100_000
)

// passes is how many times a key is deleted.
const passes = 2

// Config configures a Queue.
type Config struct {
	// Interval between attempts; 0 means DefaultInterval.
	Interval time.Duration
	// MaxKeys bounds the keys waiting; 0 means DefaultMaxKeys.
	MaxKeys int
}

// Queue holds keys to delete.
type Queue struct {
	rdb      redis.UniversalClient
	interval time.Duration
	max      int
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]int // key -> deletions still to do

	deleted, dropped atomic.Uint64
	kick             chan struct{}
	stop             chan struct{}
	done             chan struct{}
	closeOnce        sync.Once
}

// New starts a Queue on rdb.
func New(cfg Config, rdb redis.UniversalClient, log *slog.Logger) (*Queue, error) {
	if rdb == nil {
		return nil, errors.New("repair: no redis client")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Interval < 0 || cfg.MaxKeys < 0 {
		return nil, errors.New("repair: negative interval or size")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{rdb: rdb, interval: cfg.Interval, max: cfg.MaxKeys, log: log, pending: make(map[string]int),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q, nil
}

// Add queues keys for deletion.
func (q *Queue) Add(keys ...string) {
	if len(keys) == 0 {
		return
	}
	q.mu.Lock()
	dropped := 0
	for _, k := range keys {
		if _, ok := q.pending[k]; !ok && len(q.pending) >= q.max {
			dropped++
			continue
		}
		q.pending[k] = passes
	}
	q.mu.Unlock()
	if dropped > 0 {
		q.dropped.Add(uint64(dropped))
		q.log.Error("repair queue full; stale Redis keys will heal when they expire", "dropped", dropped, "max", q.max)
	}
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Pending returns how many keys wait.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Interval is the least time between a key's two deletions. A rebuild
// that reads SQL and writes Redis within less than this cannot leave a
// stale value behind a failed update (see the package comment).
func (q *Queue) Interval() time.Duration { return q.interval }

// Close stops the goroutine; keys still waiting are forgotten.
func (q *Queue) Close() {
	q.closeOnce.Do(func() {
		close(q.stop)
		<-q.done
	})
}

func (q *Queue) run() {
	defer close(q.done)
	t := time.NewTicker(q.interval)
	defer t.Stop()
	last := time.Time{}
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		case <-q.kick:
		}
		// Passes are at least an interval apart (counted from the end of
		// the last one, which may have waited for Redis): a new key is
		// tried at once after a quiet time, and its second deletion comes
		// an interval after its first.
		if time.Since(last) < q.interval {
			continue
		}
		q.pass()
		last = time.Now()
	}
}

// pass tries every waiting key once.
func (q *Queue) pass() {
	q.mu.Lock()
	keys := make([]string, 0, len(q.pending))
	for k := range q.pending {
		keys = append(keys, k)
	}
	q.mu.Unlock()
	for lo := 0; lo < len(keys); lo += 500 {
		part := keys[lo:min(lo+500, len(keys))]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := q.rdb.Del(ctx, part...).Err()
		cancel()
		if err != nil {
			q.log.Debug("repair: redis not answering yet", "keys", len(keys), "err", err)
			return
		}
		q.mu.Lock()
		for _, k := range part {
			if n := q.pending[k] - 1; n > 0 {
				q.pending[k] = n
			} else {
				delete(q.pending, k)
				q.deleted.Add(1)
			}
		}
		q.mu.Unlock()
	}
}

// Register publishes the queue's metrics on reg.
func (q *Queue) Register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dataproxy_redis_repair_pending",
			Help: "Redis cache keys waiting to be deleted after a failed update."}, func() float64 { return float64(q.Pending()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dataproxy_redis_repair_deleted_total",
			Help: "Redis cache keys deleted after a failed update."}, func() float64 { return float64(q.deleted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dataproxy_redis_repair_dropped_total",
			Help: "Redis cache keys not queued for deletion because the queue was full (they heal when they expire)."},
			func() float64 { return float64(q.dropped.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
