package downstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// ConsumerConfig configures the downstream consumer.
type ConsumerConfig struct {
	GatewayID string
	Kafka     kafkax.Common
	// PollMS is the poll timeout in milliseconds; default 100.
	PollMS int
	// DropPushes is for tests only: the first DropPushes message pushes
	// read are dropped, as if their records had been lost, so that a test
	// can watch clients notice the gap (DESIGN.md section 3, point 5).
	DropPushes int
}

// Group is the consumer group of the gateway with the given id.
func Group(gatewayID string) string { return "gochat.gateway." + gatewayID }

// Consumer reads this gateway's downstream topic.
type Consumer struct {
	cfg  ConsumerConfig
	c    *kafka.Consumer
	fan  *Fanout
	obs  func()
	log  *slog.Logger
	done chan struct{}
	// drop counts down DropPushes; only Run's goroutine uses it.
	drop int
	// parts is the topic's partition count, all of them assigned.
	parts int
}

// NewConsumer assigns itself every partition of kafkax.DownTopic(cfg.GatewayID)
// at its current end. Reading starts exactly there: every record produced
// after NewConsumer returns is seen, and nothing addressed to connections
// of an earlier process with the same id is replayed (those clients sync
// when they reconnect). The gateway is the topic's only reader, so no
// consumer-group membership is needed, and there is no rebalance to wait
// for before the first record can be read. onError (may be nil) is called
// for each record that could not be decoded.
func NewConsumer(cfg ConsumerConfig, fan *Fanout, onError func(), log *slog.Logger) (*Consumer, error) {
	if cfg.GatewayID == "" {
		return nil, errors.New("downstream: empty gateway id")
	}
	if cfg.PollMS <= 0 {
		cfg.PollMS = 100
	}
	if log == nil {
		log = slog.Default()
	}
	m := cfg.Kafka.ConsumerConfig(Group(cfg.GatewayID))
	// Offsets are never committed: a restarted gateway starts at the end.
	m["enable.auto.commit"] = false
	c, err := kafkax.NewConsumer(m, log)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	topic := kafkax.DownTopic(cfg.GatewayID)
	parts, err := assignAtEnd(c, topic)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &Consumer{cfg: cfg, c: c, fan: fan, obs: onError, log: log, done: make(chan struct{}), drop: cfg.DropPushes, parts: parts}, nil
}

// Partitions is the partition count of the downstream topic (every
// partition is read).
func (c *Consumer) Partitions() int { return c.parts }

// assignAtEnd assigns every partition of topic at its high watermark and
// returns how many there are.
func assignAtEnd(c *kafka.Consumer, topic string) (int, error) {
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) == 0 {
		return 0, fmt.Errorf("topic %s not found (%v)", topic, tm.Error)
	}
	tps := make([]kafka.TopicPartition, 0, len(tm.Partitions))
	for _, p := range tm.Partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10000)
		if err != nil {
			return 0, fmt.Errorf("end offset of %s[%d]: %w", topic, p.ID, err)
		}
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.Offset(high)})
	}
	if err := c.Assign(tps); err != nil {
		return 0, fmt.Errorf("assign %s: %w", topic, err)
	}
	return len(tps), nil
}

// Run delivers records until ctx ends, then closes the consumer.
func (c *Consumer) Run(ctx context.Context) {
	defer close(c.done)
	defer func() {
		if err := c.c.Close(); err != nil {
			c.log.Warn("closing downstream consumer", "err", err)
		}
	}()
	for ctx.Err() == nil {
		switch e := c.c.Poll(c.cfg.PollMS).(type) {
		case *kafka.Message:
			c.handle(e)
		case kafka.Error:
			if e.IsFatal() {
				c.log.Error("downstream consumer fatal error", "err", e)
			} else if e.Code() != kafka.ErrTransport && e.Code() != kafka.ErrAllBrokersDown {
				c.log.Warn("downstream consumer error", "err", e)
			}
		}
	}
}

func (c *Consumer) handle(msg *kafka.Message) {
	var skip func(*Record) bool
	if c.drop > 0 {
		skip = c.dropPush
	}
	if _, err := c.fan.deliverRaw(msg.Value, skip); err != nil {
		c.log.Warn("bad downstream record; skipped", "offset", msg.TopicPartition.Offset, "err", err)
		if c.obs != nil {
			c.obs()
		}
	}
}

// dropPush drops the first DropPushes pushes (tests only).
func (c *Consumer) dropPush(rec *Record) bool {
	if c.drop == 0 || rec.Kind != events.DownKind_PUSH {
		return false
	}
	c.drop--
	c.log.Warn("dropped a push on purpose (-drop-pushes, for tests)", "conv", rec.Message.GetConvId(), "seq", rec.Message.GetSeq(), "left", c.drop)
	return true
}

// Done is closed when Run has returned and the consumer is closed.
func (c *Consumer) Done() <-chan struct{} { return c.done }
