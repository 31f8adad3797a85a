// Package kafkax wraps confluent-kafka-go (librdkafka) with the settings
// GoChat relies on: idempotent acks=all producers that survive fatal
// errors, consumers that store each offset only after the work it stands
// for is done, and topic creation at start.
package kafkax

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Topic names shared by the services.
const (
	TopicUp         = "gochat.up"
	TopicTask       = "gochat.task"
	TopicTaskDead   = "gochat.task.dead"
	downTopicPrefix = "gochat.down."
)

// DownTopic is the downstream topic of the gateway with the given id.
func DownTopic(gatewayID string) string { return downTopicPrefix + gatewayID }

// Common holds the client settings every GoChat Kafka client shares.
type Common struct {
	// Brokers is the bootstrap list, "host:port,host:port".
	Brokers string
	// Extra is merged over the defaults; any librdkafka property works.
	Extra kafka.ConfigMap
}

// consumerOnly lists librdkafka properties (or prefixes ending in ".")
// that only consumers take; a producer given one logs a warning, so Extra
// is split.
var consumerOnly = []string{
	"group.", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
	"partition.assignment.strategy", "auto.offset.reset", "enable.auto.commit",
	"auto.commit.interval.ms", "enable.auto.offset.store", "fetch.", "isolation.level",
	"queued.", "enable.partition.eof", "check.crcs",
}

func isConsumerOnly(k string) bool {
	for _, p := range consumerOnly {
		if k == p || (strings.HasSuffix(p, ".") && strings.HasPrefix(k, p)) {
			return true
		}
	}
	return false
}

func (c Common) base(producer bool) kafka.ConfigMap {
	m := kafka.ConfigMap{
		"bootstrap.servers":       c.Brokers,
		"socket.keepalive.enable": true,
		// librdkafka leaves Nagle's algorithm on by default: a request
		// written while an earlier one on the same connection is not yet
		// acknowledged by TCP waits for that acknowledgement. A producer
		// keeps up to five requests in flight and a consumer writes commits
		// and heartbeats beside its long-polling fetch, so with Nagle a
		// message can wait a round trip (or a delayed ACK) in the kernel.
		// Every other GoChat connection (Kitex, Redis, WebSocket) already
		// sets TCP_NODELAY. The producer's 1 ms linger (ProducerConfig)
		// is what batches small messages.
		"socket.nagle.disable":               true,
		"topic.metadata.refresh.interval.ms": 10000,
	}
	for k, v := range c.Extra {
		if producer && isConsumerOnly(k) {
			continue
		}
		m[k] = v
	}
	return m
}

// ProducerConfig returns the settings of an idempotent, ordered producer:
// acks=all, at most 5 in flight (ordering holds with idempotence), the Java
// client's murmur2 partitioner so every tool maps keys alike, and a 1 ms
// linger that batches under load without adding latency when idle.
//
// It also keeps confluent-kafka-go's Go-side channels small (Extra may
// override them). By default it allocates room for a million delivery
// events and a million messages for ProduceChannel (which GoChat does not
// use): about 24 MiB of pointers that the garbage collector scans on every
// cycle, whatever they hold. In logic at 15,000 msg/s that scan was a
// quarter of the process's Go CPU. Delivery reports are drained as they
// come (callbacks must not block), and a full channel only makes the
// client wait, with the reports queued inside librdkafka.
func (c Common) ProducerConfig() kafka.ConfigMap {
	m := kafka.ConfigMap{
		"enable.idempotence":           true,
		"acks":                         "all",
		"linger.ms":                    1,
		"partitioner":                  "murmur2_random",
		"message.timeout.ms":           30000,
		"queue.buffering.max.messages": 500000,
		"go.events.channel.size":       10000,
		"go.produce.channel.size":      1000,
	}
	for k, v := range c.base(true) {
		m[k] = v
	}
	return m
}

// WithLinger returns c whose producers linger ms milliseconds, unless the
// operator's settings (Extra) already set the linger (linger.ms or its
// alias queue.buffering.max.ms). For a producer whose records are already
// batched by the application (logic's one record per gateway and batch),
// the default 1 ms only delays them. Extra is copied: c's is unchanged.
func (c Common) WithLinger(ms int) Common {
	for _, k := range []string{"linger.ms", "queue.buffering.max.ms"} {
		if _, set := c.Extra[k]; set {
			return c
		}
	}
	extra := make(kafka.ConfigMap, len(c.Extra)+1)
	for k, v := range c.Extra {
		extra[k] = v
	}
	extra["linger.ms"] = ms
	c.Extra = extra
	return c
}

// ConsumerConfig returns the settings of a group consumer that never loses
// a record: offsets are stored by the application after processing
// (enable.auto.offset.store=false) and committed in the background.
func (c Common) ConsumerConfig(group string) kafka.ConfigMap {
	m := kafka.ConfigMap{
		"group.id":                 group,
		"enable.auto.commit":       true,
		"auto.commit.interval.ms":  1000,
		"enable.auto.offset.store": false,
		"auto.offset.reset":        "earliest",
		"session.timeout.ms":       10000,
		"heartbeat.interval.ms":    1000,
		// The broker answers a fetch as soon as data arrives (long poll), so a
		// long wait adds no latency; a short one makes idle consumers busy.
		"fetch.wait.max.ms": 100,
	}
	for k, v := range c.base(false) {
		m[k] = v
	}
	return m
}

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	// Replication 0 means the broker default.
	Replication int
}

// EnsureTopics creates the topics that do not exist yet. A topic that exists
// is left as it is, whatever its partition count. The admin client takes
// the same settings (c.Extra: security, client id, ...) as the producers,
// but for confluent-kafka-go's own "go." ones, which its admin client
// refuses.
func EnsureTopics(ctx context.Context, c Common, topics ...TopicSpec) error {
	cfg := c.base(true)
	for k := range cfg {
		if strings.HasPrefix(k, "go.") {
			delete(cfg, k)
		}
	}
	admin, err := kafka.NewAdminClient(&cfg)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer admin.Close()
	specs := make([]kafka.TopicSpecification, 0, len(topics))
	for _, t := range topics {
		rf := t.Replication
		if rf == 0 {
			rf = -1
		}
		specs = append(specs, kafka.TopicSpecification{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: rf})
	}
	for {
		res, err := admin.CreateTopics(ctx, specs, kafka.SetAdminOperationTimeout(10*time.Second))
		if err == nil {
			var errs []error
			for _, r := range res {
				code := r.Error.Code()
				if code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
					errs = append(errs, fmt.Errorf("create topic %s: %w", r.Topic, r.Error))
				}
			}
			if len(errs) == 0 {
				return nil
			}
			err = errors.Join(errs...)
		}
		// The broker may still be starting: retry until ctx ends.
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure topics: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ParseConfig parses "key=value,key=value" into librdkafka properties, for
// the -kafka-config setting of every service.
func ParseConfig(s string) (kafka.ConfigMap, error) {
	m := kafka.ConfigMap{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("kafka config %q: want key=value", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}
