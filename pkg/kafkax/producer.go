package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrClosed is returned by a Producer after Close.
var ErrClosed = errors.New("kafkax: producer closed")

// Producer is an idempotent producer that replaces its librdkafka instance
// when that instance reports a fatal error (an idempotent producer cannot
// continue after one, for example when the broker lost its state).
// Messages in flight on the failed instance get an error through their
// callback; callers decide whether to retry. Safe for concurrent use.
type Producer struct {
	cfg kafka.ConfigMap
	log *slog.Logger

	mu     sync.RWMutex
	p      *kafka.Producer
	closed bool

	wg sync.WaitGroup
}

// Callback receives the outcome of one produced message.
type Callback func(err error)

// NewProducer starts a producer with c.ProducerConfig(). Its librdkafka
// log lines go to log (slog.Default() if nil), unless c.Extra sets
// go.logs.channel.enable=false.
func NewProducer(c Common, log *slog.Logger) (*Producer, error) {
	if log == nil {
		log = slog.Default()
	}
	pr := &Producer{cfg: c.producerConfig(), log: log}
	p, err := pr.start()
	if err != nil {
		return nil, err
	}
	pr.p = p
	return pr, nil
}

func (pr *Producer) start() (*kafka.Producer, error) {
	cfg := kafka.ConfigMap{}
	for k, v := range pr.cfg {
		cfg[k] = v
	}
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	pr.wg.Add(1)
	go pr.events(p)
	// Ends when p is closed (by Close or, for a failed instance, by
	// recreate); Close waits for it through wg.
	forwardClientLogs(p.Logs(), pr.cfg, pr.log, &pr.wg)
	return p, nil
}

// events delivers reports to callbacks until the producer's channel closes.
func (pr *Producer) events(p *kafka.Producer) {
	defer pr.wg.Done()
	for ev := range p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if cb, ok := e.Opaque.(Callback); ok && cb != nil {
				cb(e.TopicPartition.Error)
			}
		case kafka.Error:
			if e.IsFatal() {
				pr.log.Error("kafka producer fatal error; recreating", "err", e)
				go pr.recreate(p)
			} else if e.Code() != kafka.ErrTransport && e.Code() != kafka.ErrAllBrokersDown {
				pr.log.Warn("kafka producer error", "err", e)
			}
		}
	}
}

// recreate replaces old, unless it was replaced already (every fatal error
// of one instance leads here once; the check under mu makes the first
// call the only one that acts). The replacement is recreated in turn if it
// fails fatally too, even while old is still being released.
func (pr *Producer) recreate(old *kafka.Producer) {
	pr.mu.Lock()
	if pr.closed || pr.p != old {
		pr.mu.Unlock()
		return
	}
	for {
		p, err := pr.start()
		if err == nil {
			pr.p = p
			break
		}
		pr.log.Error("kafka producer restart failed", "err", err)
		time.Sleep(time.Second)
	}
	pr.mu.Unlock()
	// Fail what was queued on the dead instance, serve the purge's
	// reports, then release it. Close alone would drop the reports still
	// queued in librdkafka, and a caller waiting for one (logic's worker
	// holds a batch's offset until every report is in) would wait for
	// ever.
	_ = old.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
	if n := old.Flush(int(purgeWait / time.Millisecond)); n > 0 {
		pr.log.Error("kafka producer: reports of a failed instance still missing; their senders get no callback", "missing", n, "waited", purgeWait)
	}
	old.Close()
}

// purgeWait bounds the wait for a failed instance's purge reports. A purge
// fails every message at once, so they normally all arrive within
// milliseconds.
const purgeWait = 30 * time.Second

// Produce queues one message; cb (which may be nil) runs on the delivery
// goroutine when the broker has acknowledged it or it failed, so cb must
// not block. A full local queue is retried for up to a second.
func (pr *Producer) Produce(topic string, key, value []byte, cb Callback) error {
	return pr.ProduceTo(topic, kafka.PartitionAny, key, value, cb)
}

// ProduceTo is Produce to one partition; kafka.PartitionAny lets the
// partitioner choose from key.
func (pr *Producer) ProduceTo(topic string, partition int32, key, value []byte, cb Callback) error {
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
		Key:            key,
		Value:          value,
		Opaque:         cb,
	}
	deadline := time.Now().Add(time.Second)
	for {
		pr.mu.RLock()
		if pr.closed {
			pr.mu.RUnlock()
			return ErrClosed
		}
		err := pr.p.Produce(msg, nil)
		pr.mu.RUnlock()
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		return err
	}
}

// Msg is one message of a batch.
type Msg struct {
	Topic string
	Key   []byte
	Value []byte
	// Pinned writes the message to Partition instead of where the
	// partitioner maps Key.
	Pinned    bool
	Partition int32
}

// To is the partition argument of ProduceTo for m.
func (m Msg) To() int32 {
	if m.Pinned {
		return m.Partition
	}
	return kafka.PartitionAny
}

// SendAll produces msgs and waits until every one is acknowledged. It
// returns the first error; on error some messages may have been written, so
// consumers must tolerate duplicates (GoChat's records are idempotent).
func (pr *Producer) SendAll(ctx context.Context, msgs []Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	var (
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	fail := func(err error) { once.Do(func() { ferr = err }) }
	cb := Callback(func(err error) {
		if err != nil {
			fail(err)
		}
		wg.Done()
	})
	for _, m := range msgs {
		wg.Add(1)
		if err := pr.ProduceTo(m.Topic, m.To(), m.Key, m.Value, cb); err != nil {
			wg.Done()
			fail(err)
			break
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return ferr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits up to d for queued messages to be delivered.
func (pr *Producer) Flush(d time.Duration) int {
	pr.mu.RLock()
	defer pr.mu.RUnlock()
	if pr.closed {
		return 0
	}
	return pr.p.Flush(int(d / time.Millisecond))
}

// Close flushes for up to 5 s and stops the producer.
func (pr *Producer) Close() {
	pr.mu.Lock()
	if pr.closed {
		pr.mu.Unlock()
		return
	}
	pr.closed = true
	p := pr.p
	pr.mu.Unlock()
	p.Flush(5000)
	p.Close()
	pr.wg.Wait()
}
