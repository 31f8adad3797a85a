package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/dataproxy"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// ConsumerConfig configures the upstream consumer.
type ConsumerConfig struct {
	Kafka kafkax.Common
	Group string
	// MaxBatch caps the records handled together (one dataproxy call), at
	// most dataproxy.MAX_BATCH, the most items dataproxy takes per call;
	// 0 means DefaultMaxBatch.
	MaxBatch int
	// Workers is how many batches are prepared at once; each upstream
	// partition always goes to the same worker, so its records stay in
	// order. Concurrent batches meet in dataproxy's group commit. 0 means
	// DefaultWorkers.
	Workers int
	// MaxInflight caps, per worker, the batches whose outputs Kafka has not
	// acknowledged yet; 0 means DefaultMaxInflight.
	MaxInflight int
	// Grace is how long work under way may take to finish once Run's
	// context has ended (for example while dataproxy is being retried);
	// 0 means DefaultGrace.
	Grace time.Duration
}

// Defaults of the ConsumerConfig fields left 0.
const (
	DefaultMaxBatch    = 256
	DefaultWorkers     = 4
	DefaultMaxInflight = 8
	DefaultGrace       = 10 * time.Second
)

// Check refuses a configuration NewConsumer cannot run as asked: a
// negative count or grace (0 is each one's default, but a negative value
// is a mistake, not a request for the default), or a batch larger than
// dataproxy takes in one call, which it would refuse whole, so that every
// send in a full batch would be answered with an error. It contacts
// nothing, so a service can call it before it connects anywhere.
func (cfg ConsumerConfig) Check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"max batch", cfg.MaxBatch}, {"workers", cfg.Workers}, {"max inflight", cfg.MaxInflight}} {
		if f.v < 0 {
			return fmt.Errorf("%s %d: must not be negative", f.name, f.v)
		}
	}
	if cfg.Grace < 0 {
		return fmt.Errorf("grace %v: must not be negative", cfg.Grace)
	}
	if cfg.MaxBatch > dataproxy.MAX_BATCH {
		return fmt.Errorf("max batch %d: dataproxy takes at most %d messages in one call", cfg.MaxBatch, dataproxy.MAX_BATCH)
	}
	return nil
}

// Consumer reads the upstream topic and feeds the workers.
type Consumer struct {
	cfg     ConsumerConfig
	c       *kafka.Consumer
	proc    *Processor
	prod    AsyncProducer
	log     *slog.Logger
	workers []*worker
}

// NewConsumer checks cfg (see Check) and creates the consumer; Run starts
// it.
func NewConsumer(cfg ConsumerConfig, proc *Processor, prod AsyncProducer, log *slog.Logger) (*Consumer, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	conf := cfg.Kafka.ConsumerConfig(cfg.Group)
	c, err := kafkax.NewConsumer(conf, log)
	if err != nil {
		return nil, fmt.Errorf("upstream consumer: %w", err)
	}
	cons := &Consumer{cfg: cfg, c: c, proc: proc, prod: prod, log: log}
	for range cfg.Workers {
		cons.workers = append(cons.workers, newWorker(proc, prod, c, cfg.MaxBatch, cfg.MaxInflight, log))
	}
	return cons, nil
}

// Run consumes until ctx ends, then lets the work under way finish (within
// Grace), commits and closes the consumer. Before partitions are taken away
// in a rebalance (inside Poll), every record handed out is finished and its
// offset committed, so the next owner starts exactly after it.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.c.Close()
	// Work under way finishes after ctx ends, within Grace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, cancelWork) })
	defer stop()

	err := c.c.SubscribeTopics([]string{kafkax.TopicUp}, func(kc *kafka.Consumer, ev kafka.Event) error {
		switch e := ev.(type) {
		case kafka.AssignedPartitions:
			c.log.Info("upstream partitions assigned", "partitions", len(e.Partitions))
		case kafka.RevokedPartitions:
			c.drain(work)
			c.commit("revoke")
			c.log.Info("upstream partitions revoked", "partitions", len(e.Partitions))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	var wg sync.WaitGroup
	for _, w := range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(work)
		}()
	}
	for ctx.Err() == nil {
		switch e := c.c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				c.log.Warn("upstream message error", "err", e.TopicPartition.Error)
				continue
			}
			c.workers[int(e.TopicPartition.Partition)%len(c.workers)].dispatch(e)
		case kafka.Error:
			if e.IsFatal() {
				c.log.Error("upstream consumer fatal error", "err", e)
			} else {
				c.log.Debug("upstream consumer", "err", e)
			}
		}
	}
	for _, w := range c.workers {
		close(w.in)
	}
	c.drain(work)
	wg.Wait()
	c.commit("shutdown")
	return nil
}

// drain waits until every worker has finished what it was given, or ctx
// ends.
func (c *Consumer) drain(ctx context.Context) {
	done := true
	for _, w := range c.workers {
		done = w.drain(ctx) && done
	}
	if !done {
		c.log.Warn("upstream work abandoned unfinished; it will be replayed")
	}
}

func (c *Consumer) commit(when string) {
	if _, err := c.c.Commit(); err != nil && !noOffset(err) {
		c.log.Warn("commit", "when", when, "err", err)
	}
}

// noOffset reports the harmless "nothing to commit" answer.
func noOffset(err error) bool {
	ke, ok := err.(kafka.Error)
	return ok && ke.Code() == kafka.ErrNoOffset
}
