package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// ConsumerConfig configures the upstream consumer.
type ConsumerConfig struct {
	Kafka kafkax.Common
	Group string
	// MaxBatch caps the records handled together (one dataproxy call, one
	// produce round).
	MaxBatch int
	// Grace is how long a batch under way may take to finish once Run's
	// context has ended (for example while dataproxy is being retried).
	Grace time.Duration
}

// Consumer reads the upstream topic and feeds a Processor.
type Consumer struct {
	cfg  ConsumerConfig
	c    *kafka.Consumer
	proc *Processor
	log  *slog.Logger
}

// NewConsumer creates the consumer; Run starts it.
func NewConsumer(cfg ConsumerConfig, proc *Processor, log *slog.Logger) (*Consumer, error) {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	conf := cfg.Kafka.ConsumerConfig(cfg.Group)
	c, err := kafka.NewConsumer(&conf)
	if err != nil {
		return nil, fmt.Errorf("upstream consumer: %w", err)
	}
	return &Consumer{cfg: cfg, c: c, proc: proc, log: log}, nil
}

// Run consumes until ctx ends, then commits what was processed and closes
// the consumer. Every batch is finished before the next poll, so when a
// rebalance takes partitions away (it happens inside Poll) no record of
// theirs is half done, and their stored offsets are committed first.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.c.Close()
	err := c.c.SubscribeTopics([]string{kafkax.TopicUp}, func(kc *kafka.Consumer, ev kafka.Event) error {
		switch e := ev.(type) {
		case kafka.AssignedPartitions:
			c.log.Info("upstream partitions assigned", "partitions", len(e.Partitions))
		case kafka.RevokedPartitions:
			if _, err := kc.Commit(); err != nil && !noOffset(err) {
				c.log.Warn("commit on revoke", "err", err)
			}
			c.log.Info("upstream partitions revoked", "partitions", len(e.Partitions))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	// The batch under way finishes after ctx ends, within Grace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, cancelWork) })
	defer stop()
	var (
		msgs []*kafka.Message
		recs []*events.UpRecord
	)
	for ctx.Err() == nil {
		msgs, recs = c.poll(msgs[:0], recs[:0])
		if len(msgs) == 0 {
			continue
		}
		c.proc.m.batchSize.Observe(float64(len(recs)))
		if err := c.proc.Process(work, recs); err != nil {
			// The grace period ended mid-batch: do not store its offsets; the records
			// are replayed by whoever owns the partition next.
			break
		}
		if _, err := c.c.StoreOffsets(nextOffsets(msgs)); err != nil {
			c.log.Error("store offsets", "err", err)
		}
	}
	if _, err := c.c.Commit(); err != nil && !noOffset(err) {
		c.log.Warn("final commit", "err", err)
	}
	return nil
}

// poll waits up to 100 ms for a first record, then takes whatever else is
// already fetched, up to MaxBatch. Records that fail to decode are logged
// and skipped (their offsets are still stored: they can never succeed).
func (c *Consumer) poll(msgs []*kafka.Message, recs []*events.UpRecord) ([]*kafka.Message, []*events.UpRecord) {
	timeout := 100
	for len(msgs) < c.cfg.MaxBatch {
		ev := c.c.Poll(timeout)
		if ev == nil {
			break
		}
		timeout = 0
		switch e := ev.(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				c.log.Warn("upstream message error", "err", e.TopicPartition.Error)
				continue
			}
			msgs = append(msgs, e)
			rec := &events.UpRecord{}
			if err := kafkax.Decode(e.Value, rec); err != nil {
				c.log.Error("undecodable upstream record skipped", "partition", e.TopicPartition.Partition, "offset", e.TopicPartition.Offset, "err", err)
				continue
			}
			recs = append(recs, rec)
		case kafka.Error:
			if e.IsFatal() {
				c.log.Error("upstream consumer fatal error", "err", e)
			} else {
				c.log.Debug("upstream consumer", "err", e)
			}
		}
	}
	return msgs, recs
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

// noOffset reports the harmless "nothing to commit" answer.
func noOffset(err error) bool {
	ke, ok := err.(kafka.Error)
	return ok && ke.Code() == kafka.ErrNoOffset
}
