// Package consumer is the task service's Kafka consumer: it reads task
// records from the task topic, runs them concurrently through the job
// registry, retries failures with backoff, sends what fails for good to the
// dead-letter topic, and stores each partition's offset only past records
// that are completely done.
//
// Delivery is at least once. A task is redone, never lost, when:
//   - the process dies: everything after the last committed offset of each
//     partition is consumed again, including tasks that had finished but
//     sat behind an unfinished one, and tasks finished in the last
//     auto-commit interval (1 s);
//   - a partition is revoked in a rebalance: its unfinished tasks (running,
//     waiting to retry, or being dead-lettered) are abandoned without storing
//     their offsets and redone by the new owner, with a fresh attempt count;
//   - the graceful shutdown's grace period ends with tasks still in flight.
//
// A task that fails for good is not finished until the dead-letter topic
// has its record. A dead-letter write that fails is retried with backoff for
// as long as it takes, holding its partition's offset and an in-flight
// slot; after Config.DeadLetterStuckAfter failures of one task the consumer
// reports itself not ready (Config.OnReady) until the write succeeds.
//
// Concurrency: Run owns the librdkafka consumer and calls Poll on one
// goroutine; the rebalance callback runs inside Poll on that goroutine too.
// The Dispatcher's workers, retry timers and dead-letter callbacks run
// elsewhere and reach librdkafka only through StoreOffsets, which is safe
// from any goroutine. The fields marked "poll goroutine" are touched only by
// Run and the callback.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/gochat-im/gochat/pkg/kafkax"
	"github.com/gochat-im/gochat/task/internal/backoff"
	"github.com/gochat-im/gochat/task/internal/job"
	"github.com/gochat-im/gochat/task/internal/metrics"
)

// Config configures the consumer. Zero fields take the defaults noted;
// negative ones are refused.
type Config struct {
	Kafka kafkax.Common
	// Group is the consumer group; "gochat.task" by default.
	Group string
	// Topic is read; kafkax.TopicTask by default.
	Topic string
	// DeadTopic receives failed tasks; kafkax.TopicTaskDead by default.
	DeadTopic string
	// Workers run attempts concurrently; 16 by default.
	Workers int
	// MaxInflight bounds the tasks consumed and not finished, retries
	// waiting included; fetching pauses at the bound. 1024 by default.
	MaxInflight int
	// MaxAttempts per task before dead-lettering; 5 by default.
	MaxAttempts int
	// Backoff spaces attempts; 200 ms doubling up to 30 s by default.
	Backoff backoff.Policy
	// ShutdownGrace is how long Run lets in-flight tasks finish after its
	// context ends; 10 s by default.
	ShutdownGrace time.Duration
	// PollInterval bounds one Poll call; 100 ms by default.
	PollInterval time.Duration
	// DeadLetterStuckAfter is the number of failed dead-letter writes of
	// one task after which the consumer reports itself not ready (see
	// OnReady); DefaultStuckAfter by default. The write is still retried.
	DeadLetterStuckAfter int
	// OnReady, when set, is told whether the consumer works as it should:
	// true once Run has subscribed, false while a task's dead-letter write
	// has failed DeadLetterStuckAfter times or more (the task is still
	// retried, and its partition's offset waits for it), true again when
	// no task is in that state, and false when the shutdown starts. It is
	// called from Run's goroutine, only when the value changes. The task
	// service flips /readyz with it.
	OnReady func(ready bool)
}

// check refuses negative values, which have no meaning.
func (c *Config) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"workers", c.Workers},
		{"max-inflight", c.MaxInflight},
		{"max-attempts", c.MaxAttempts},
		{"dead-letter stuck after", c.DeadLetterStuckAfter},
	} {
		if f.v < 0 {
			return fmt.Errorf("consumer: negative %s (%d)", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"retry base", c.Backoff.Base},
		{"retry max", c.Backoff.Max},
		{"shutdown grace", c.ShutdownGrace},
		{"poll interval", c.PollInterval},
	} {
		if f.v < 0 {
			return fmt.Errorf("consumer: negative %s (%v)", f.name, f.v)
		}
	}
	return nil
}

func (c *Config) defaults() {
	if c.Group == "" {
		c.Group = "gochat.task"
	}
	if c.Topic == "" {
		c.Topic = kafkax.TopicTask
	}
	if c.DeadTopic == "" {
		c.DeadTopic = kafkax.TopicTaskDead
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 1024
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.Backoff.Base == 0 {
		c.Backoff.Base = 200 * time.Millisecond
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = 30 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.DeadLetterStuckAfter == 0 {
		c.DeadLetterStuckAfter = DefaultStuckAfter
	}
}

// Consumer reads the task topic. Create it with New and call Run once.
type Consumer struct {
	cfg Config
	kc  *kafka.Consumer
	d   *Dispatcher
	m   *metrics.Metrics
	log *slog.Logger

	// Poll goroutine.
	assigned map[partKey]struct{}
	paused   bool
	draining bool
	ready    bool // as last told to cfg.OnReady
}

// New creates the librdkafka consumer and the dispatcher; nothing is
// consumed before Run. dead writes dead-letter records (a
// *kafkax.Producer in the service).
func New(cfg Config, reg *job.Registry, dead DeadLetterer, m *metrics.Metrics, log *slog.Logger) (*Consumer, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if reg == nil || dead == nil || m == nil {
		return nil, errors.New("consumer: missing job registry, dead-letter producer or metrics")
	}
	if cfg.MaxInflight < 1 || cfg.Workers < 1 {
		return nil, fmt.Errorf("consumer: workers %d and max-inflight %d must be at least 1", cfg.Workers, cfg.MaxInflight)
	}
	if log == nil {
		log = slog.Default()
	}
	kcfg := cfg.Kafka.ConsumerConfig(cfg.Group)
	// Cooperative rebalancing moves only the partitions that change owner,
	// so adding a task instance does not abandon every task in flight. An
	// operator's -kafka-config setting wins.
	if _, set := cfg.Kafka.Extra["partition.assignment.strategy"]; !set {
		kcfg["partition.assignment.strategy"] = "cooperative-sticky"
	}
	kc, err := kafkax.NewConsumer(kcfg, log)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	m.InitKinds(reg.Names()...)
	c := &Consumer{cfg: cfg, kc: kc, m: m, log: log, assigned: map[partKey]struct{}{}}
	store := func(topic string, id int32, next int64) error {
		_, err := kc.StoreOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: id, Offset: kafka.Offset(next)}})
		return err
	}
	c.d, err = NewDispatcher(DispatcherConfig{
		Workers: cfg.Workers, MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff, DeadTopic: cfg.DeadTopic,
		StuckAfter: cfg.DeadLetterStuckAfter,
	}, reg, dead, store, m, log)
	if err != nil {
		_ = kc.Close()
		return nil, err
	}
	return c, nil
}

// Run consumes until ctx ends or the consumer hits a fatal error, then
// shuts down gracefully: fetching stops, in-flight tasks get
// cfg.ShutdownGrace to finish, the rest are abandoned (not stored), stored
// offsets are committed and the consumer leaves its group. Run returns
// after all of that; the consumer cannot be used again.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.kc.SubscribeTopics([]string{c.cfg.Topic}, c.rebalance); err != nil {
		c.d.Close()
		_ = c.kc.Close()
		return fmt.Errorf("subscribe %s: %w", c.cfg.Topic, err)
	}
	c.log.Info("consuming tasks", "topic", c.cfg.Topic, "group", c.cfg.Group, "workers", c.cfg.Workers, "max_inflight", c.cfg.MaxInflight)
	c.setReady(true)
	pollMs := int(c.cfg.PollInterval / time.Millisecond)
	var runErr error
	for runErr == nil && ctx.Err() == nil {
		c.checkReady()
		c.throttle()
		switch e := c.kc.Poll(pollMs).(type) {
		case *kafka.Message:
			c.onMessage(e)
		case kafka.Error:
			runErr = c.onError(e)
		}
	}
	c.shutdown()
	return runErr
}

func (c *Consumer) onMessage(m *kafka.Message) {
	tp := m.TopicPartition
	if tp.Error != nil {
		c.log.Warn("kafka consume error", "topic", topicOf(tp), "partition", tp.Partition, "err", tp.Error)
		return
	}
	if c.draining {
		// Not stored: consumed again after the restart.
		return
	}
	if !c.d.Submit(topicOf(tp), tp.Partition, int64(tp.Offset), m.Key, m.Value) {
		c.log.Debug("record of an unassigned partition ignored", "partition", tp.Partition, "offset", tp.Offset)
	}
}

func (c *Consumer) onError(e kafka.Error) error {
	if e.IsFatal() {
		return fmt.Errorf("kafka consumer: %w", e)
	}
	if e.Code() == kafka.ErrAllBrokersDown || e.Code() == kafka.ErrTransport {
		c.log.Warn("kafka unreachable; retrying", "err", e)
		return nil
	}
	c.log.Warn("kafka consumer error", "err", e)
	return nil
}

// checkReady tells cfg.OnReady whether the consumer is ready: it is not
// while a dead-letter write keeps failing.
func (c *Consumer) checkReady() {
	stuck := c.d.Stuck()
	ready := stuck == 0
	if ready == c.ready {
		return
	}
	if ready {
		c.log.Info("no dead-letter write is stuck any more; ready again")
	} else {
		c.log.Error("dead-letter writes keep failing; reporting not ready", "stuck_tasks", stuck)
	}
	c.setReady(ready)
}

func (c *Consumer) setReady(ready bool) {
	c.ready = ready
	if c.cfg.OnReady != nil {
		c.cfg.OnReady(ready)
	}
}

// throttle pauses fetching while MaxInflight tasks are in flight and
// resumes once a quarter of them are done. librdkafka drops the records it
// prefetched for paused partitions and fetches them again on resume, so a
// bound that flapped on every task would cost refetches; hence the gap.
func (c *Consumer) throttle() {
	n := c.d.Inflight()
	switch {
	case !c.paused && n >= c.cfg.MaxInflight:
		c.setPaused(true)
	case c.paused && !c.draining && n <= min(c.cfg.MaxInflight-1, c.cfg.MaxInflight*3/4):
		c.setPaused(false)
	}
}

func (c *Consumer) setPaused(p bool) {
	parts := c.assignment()
	var err error
	if len(parts) > 0 {
		if p {
			err = c.kc.Pause(parts)
		} else {
			err = c.kc.Resume(parts)
		}
	}
	if err != nil {
		c.log.Warn("kafka pause/resume", "pause", p, "err", err)
		return
	}
	c.paused = p
	if p {
		c.m.Paused.Set(1)
		c.log.Debug("fetching paused", "in_flight", c.d.Inflight())
	} else {
		c.m.Paused.Set(0)
		c.log.Debug("fetching resumed", "in_flight", c.d.Inflight())
	}
}

func (c *Consumer) assignment() []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, 0, len(c.assigned))
	for k := range c.assigned {
		topic := k.topic
		out = append(out, kafka.TopicPartition{Topic: &topic, Partition: k.id})
	}
	return out
}

// rebalance runs inside Poll. On assignment it starts tracking the new
// partitions, paused or resumed to match fetching; on revocation it abandons
// their tasks first, so no offset of theirs can be stored after this point,
// then commits what was stored while they were ours.
func (c *Consumer) rebalance(kc *kafka.Consumer, ev kafka.Event) error {
	cooperative := kc.GetRebalanceProtocol() == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		for _, tp := range e.Partitions {
			c.d.Assign(topicOf(tp), tp.Partition)
			c.assigned[partKey{topicOf(tp), tp.Partition}] = struct{}{}
		}
		var err error
		if cooperative {
			err = kc.IncrementalAssign(e.Partitions)
		} else {
			err = kc.Assign(e.Partitions)
		}
		if err != nil {
			c.log.Error("kafka assign", "err", err)
		}
		// librdkafka keeps a partition's pause flag across revocation and
		// assignment: a partition revoked while fetching was paused comes
		// back paused even if fetching has resumed since. Set the flag
		// explicitly either way.
		if len(e.Partitions) > 0 {
			if c.paused {
				err = kc.Pause(e.Partitions)
			} else {
				err = kc.Resume(e.Partitions)
			}
			if err != nil {
				c.log.Warn("kafka pause/resume assigned partitions", "pause", c.paused, "err", err)
			}
		}
		c.log.Info("partitions assigned", "topic", c.cfg.Topic, "partitions", partitionIDs(e.Partitions), "protocol", kc.GetRebalanceProtocol())
	case kafka.RevokedPartitions:
		for _, tp := range e.Partitions {
			c.d.Revoke(topicOf(tp), tp.Partition)
			delete(c.assigned, partKey{topicOf(tp), tp.Partition})
		}
		lost := kc.AssignmentLost()
		if !lost {
			c.commit("revoke")
		}
		var err error
		if cooperative {
			err = kc.IncrementalUnassign(e.Partitions)
		} else {
			err = kc.Unassign()
		}
		if err != nil {
			c.log.Error("kafka unassign", "err", err)
		}
		c.log.Info("partitions revoked", "topic", c.cfg.Topic, "partitions", partitionIDs(e.Partitions), "lost", lost)
	}
	return nil
}

// commit writes the stored offsets now instead of at the next auto-commit.
func (c *Consumer) commit(why string) {
	if _, err := c.kc.Commit(); err != nil {
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrNoOffset {
			return // nothing stored since the last commit
		}
		c.log.Warn("kafka commit", "when", why, "err", err)
	}
}

func (c *Consumer) shutdown() {
	c.draining = true
	if c.ready {
		c.setReady(false)
	}
	if !c.paused {
		c.setPaused(true)
	}
	deadline := time.Now().Add(c.cfg.ShutdownGrace)
	pollMs := int(c.cfg.PollInterval / time.Millisecond)
	// Keep polling so rebalances are still served while tasks finish.
	for c.d.Inflight() > 0 && time.Now().Before(deadline) {
		switch e := c.kc.Poll(pollMs).(type) {
		case *kafka.Message:
			c.onMessage(e)
		case kafka.Error:
			if e.IsFatal() {
				deadline = time.Now()
			}
		}
	}
	if n := c.d.Inflight(); n > 0 {
		c.log.Warn("shutdown grace period over; abandoning unfinished tasks, they will be redone", "count", n)
	}
	c.d.AbandonAll()
	c.d.Close()
	c.commit("shutdown")
	if err := c.kc.Close(); err != nil {
		c.log.Warn("kafka consumer close", "err", err)
	}
	c.log.Info("task consumer stopped")
}

func topicOf(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

func partitionIDs(tps []kafka.TopicPartition) []int32 {
	ids := make([]int32, len(tps))
	for i, tp := range tps {
		ids[i] = tp.Partition
	}
	return ids
}
