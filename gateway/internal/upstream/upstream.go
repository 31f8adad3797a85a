// Package upstream writes client sends to the upstream Kafka topic, keyed by
// conversation id so each conversation's messages stay in order.
//
// The gateway does not acknowledge sends itself: logic acknowledges after
// the message is durable, through this gateway's downstream topic. A send
// Kafka refuses is reported to its callback so the client is told to retry.
//
// Concurrency: Kafka is safe for concurrent use.
package upstream

import (
	"errors"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// Sink accepts upstream records. done runs once with the outcome, on
// another goroutine, and must not block.
type Sink interface {
	Send(rec *events.UpRecord, done func(error)) error
}

// Producer is the part of kafkax.Producer the sink uses.
type Producer interface {
	Produce(topic string, key, value []byte, cb kafkax.Callback) error
}

// Kafka is the Sink for production.
type Kafka struct {
	p     Producer
	topic string
}

// NewKafka returns a sink producing to kafkax.TopicUp through p.
func NewKafka(p Producer) (*Kafka, error) {
	if p == nil {
		return nil, errors.New("upstream: no producer")
	}
	return &Kafka{p: p, topic: kafkax.TopicUp}, nil
}

// Send encodes rec with Thrift binary and produces it keyed by its
// conversation id.
func (k *Kafka) Send(rec *events.UpRecord, done func(error)) error {
	val := kafkax.Encode(rec)
	var cb kafkax.Callback
	if done != nil {
		cb = kafkax.Callback(done)
	}
	return k.p.Produce(k.topic, []byte(rec.ConvId), val, cb)
}
