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
}

// NewConsumer subscribes to kafkax.DownTopic(cfg.GatewayID). A new group
// starts at the latest offset: pushes for connections of an earlier process
// are useless, clients sync when they reconnect. onError (may be nil) is
// called for each record that could not be decoded.
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
	m["auto.offset.reset"] = "latest"
	c, err := kafka.NewConsumer(&m)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	topic := kafkax.DownTopic(cfg.GatewayID)
	if err := c.SubscribeTopics([]string{topic}, nil); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	return &Consumer{cfg: cfg, c: c, fan: fan, obs: onError, log: log, done: make(chan struct{})}, nil
}

// Run delivers records until ctx ends, then closes the consumer (committing
// the stored offsets). Each record's offset is stored only after its frames
// were queued.
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
	rec := events.NewDownRecord()
	if err := kafkax.Decode(msg.Value, rec); err != nil {
		c.log.Warn("undecodable downstream record; skipped", "offset", msg.TopicPartition.Offset, "err", err)
		if c.obs != nil {
			c.obs()
		}
	} else if _, err := c.fan.Deliver(rec); err != nil {
		c.log.Warn("bad downstream record; skipped", "offset", msg.TopicPartition.Offset, "err", err)
		if c.obs != nil {
			c.obs()
		}
	}
	if _, err := c.c.StoreMessage(msg); err != nil {
		c.log.Warn("store downstream offset", "err", err)
	}
}

// Done is closed when Run has returned and the consumer is closed.
func (c *Consumer) Done() <-chan struct{} { return c.done }
