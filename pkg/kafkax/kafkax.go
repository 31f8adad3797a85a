// Package kafkax wraps confluent-kafka-go (librdkafka) with the settings
// GoChat relies on: idempotent acks=all producers that survive fatal
// errors, consumers that store each offset only after the work it stands
// for is done, and topic creation at start.
package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
	// Extra is merged over the defaults; any librdkafka property works,
	// and confluent-kafka-go's own "go." ones (ParseConfig gives those the
	// Go types it requires). go.logs.channel.enable=false sends
	// librdkafka's log lines back to stderr, unstructured, instead of
	// log/slog.
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
	// confluent-kafka-go's own consumer settings: its producer passes any
	// go. property it does not know to librdkafka, which refuses it.
	"go.application.rebalance.enable", "go.events.channel.enable",
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
		// librdkafka writes its log lines to stderr itself, unstructured,
		// unless they are queued for the application: with this setting
		// confluent-kafka-go hands them over on the client's Logs()
		// channel and kafkax logs them with log/slog, in the service's
		// format (logs.go). Extra may turn it off
		// (go.logs.channel.enable=false) to get librdkafka's own lines.
		"go.logs.channel.enable": true,
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
//
// librdkafka's log lines go to slog.Default() through one goroutine shared
// by the process (logs.go); Producer, which uses the same settings, logs
// them to its own logger instead.
func (c Common) ProducerConfig() kafka.ConfigMap {
	return withSharedLogs(c.producerConfig())
}

// producerConfig is ProducerConfig without the shared logs channel, for
// producers kafkax creates and reads the logs of itself.
func (c Common) producerConfig() kafka.ConfigMap {
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
//
// The consumer's librdkafka log lines go to slog.Default() through one
// goroutine shared by the process (logs.go): kafka.NewConsumer, which the
// callers use, gives kafkax no way to reach the consumer's own logs
// channel. NewConsumer does, and logs them to the logger it is given.
func (c Common) ConsumerConfig(group string) kafka.ConfigMap {
	return withSharedLogs(c.consumerConfig(group))
}

func (c Common) consumerConfig(group string) kafka.ConfigMap {
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

// EnsureOptions tunes EnsureTopicsWith. The zero value is what
// EnsureTopics uses.
type EnsureOptions struct {
	// Log receives a warning for each failed attempt and the librdkafka
	// lines of the admin client; nil means slog.Default().
	Log *slog.Logger
	// AttemptTimeout bounds each CreateTopics call; 0 means 5 s. Before,
	// the first call was given the caller's whole deadline, so an
	// unreachable broker showed nothing until that ended.
	AttemptTimeout time.Duration
}

const (
	defaultAttemptTimeout = 5 * time.Second
	// ensureBackoffMax caps the pause between attempts that fail fast (a
	// refused request), so they are not logged five times a second.
	ensureBackoffMax = 2 * time.Second
)

// EnsureTopics is EnsureTopicsWith with the zero EnsureOptions: warnings
// go to slog.Default(), which the services set to their logger.
func EnsureTopics(ctx context.Context, c Common, topics ...TopicSpec) error {
	return EnsureTopicsWith(ctx, c, EnsureOptions{}, topics...)
}

// EnsureTopicsWith creates the topics that do not exist yet. A topic that
// exists is left as it is, whatever its partition count. The broker may
// still be starting, so it retries until ctx ends, each attempt within
// o.AttemptTimeout, logging a warning that names the brokers after each
// failed one. The error after ctx ends names the brokers, the last
// attempt's error and the last error the client reported (such as a
// refused connection), and wraps ctx.Err().
//
// The admin client takes the same settings (c.Extra: security, client id,
// ...) as the producers, but for confluent-kafka-go's own "go." ones other
// than go.logs.*, which do not apply to it.
func EnsureTopicsWith(ctx context.Context, c Common, o EnsureOptions, topics ...TopicSpec) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	per := o.AttemptTimeout
	if per <= 0 {
		per = defaultAttemptTimeout
	}
	admin, err := newAdmin(c, log)
	if err != nil {
		return fmt.Errorf("kafka admin for brokers %s: %w", c.Brokers, err)
	}
	defer admin.close()
	specs := make([]kafka.TopicSpecification, 0, len(topics))
	for _, t := range topics {
		rf := t.Replication
		if rf == 0 {
			rf = -1
		}
		specs = append(specs, kafka.TopicSpecification{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: rf})
	}
	start := time.Now()
	backoff := 200 * time.Millisecond
	var last error // the last attempt's error that was not ctx ending
	attempts := 0
	for ctx.Err() == nil {
		attempts++
		err := admin.createTopics(ctx, specs, per)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// Cut short by the caller's deadline: says nothing new.
			break
		}
		last = err
		args := []any{"brokers", c.Brokers, "attempt", attempts, "err", err}
		if cerr := admin.clientErr(); cerr != nil {
			args = append(args, "client_err", cerr)
		}
		log.Warn("kafka: cannot create topics yet; retrying", args...)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, ensureBackoffMax)
	}
	var detail string
	if last != nil {
		detail += fmt.Sprintf("; last error: %v", last)
	}
	if cerr := admin.clientErr(); cerr != nil {
		detail += fmt.Sprintf("; last client error: %v", cerr)
	}
	return fmt.Errorf("ensure topics on brokers %s: %w after %d attempt(s) in %s%s",
		c.Brokers, ctx.Err(), attempts, time.Since(start).Round(time.Millisecond), detail)
}

// admin is an admin client for EnsureTopics. It is derived from a
// producer because confluent-kafka-go's NewAdminClient has neither a logs
// channel (its librdkafka lines would go to stderr) nor an events channel
// (its connection errors would be seen by nobody); a producer has both,
// and librdkafka serves admin requests from any client type.
type admin struct {
	p  *kafka.Producer
	a  *kafka.AdminClient
	wg sync.WaitGroup

	mu   sync.Mutex
	last kafka.Error // the last error event, zero if none
}

func newAdmin(c Common, log *slog.Logger) (*admin, error) {
	cfg := c.base(true)
	for k := range cfg {
		// The producer's Go-side settings (channel sizes, delivery
		// reports) are of no use to a client that produces nothing.
		if strings.HasPrefix(k, "go.") && !strings.HasPrefix(k, "go.logs.") {
			delete(cfg, k)
		}
	}
	// No million-slot channels (confluent-kafka-go's default) for a
	// client that produces nothing: only errors arrive, and they are
	// read at once.
	cfg["go.events.channel.size"] = 100
	cfg["go.produce.channel.size"] = 1
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		return nil, err
	}
	a, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	ad := &admin{p: p, a: a}
	forwardClientLogs(p.Logs(), cfg, log, &ad.wg)
	ad.wg.Add(1)
	go func() {
		defer ad.wg.Done()
		// Ends when p.Close closes the channel.
		for ev := range p.Events() {
			if e, ok := ev.(kafka.Error); ok {
				ad.mu.Lock()
				// "1/1 brokers are down" follows the error that says why
				// (refused, timed out, authentication failed): keep that.
				if e.Code() != kafka.ErrAllBrokersDown || ad.last.Code() == kafka.ErrNoError {
					ad.last = e
				}
				ad.mu.Unlock()
			}
		}
	}()
	return ad, nil
}

// clientErr is the last error the client reported, or nil.
func (ad *admin) clientErr() error {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if ad.last.Code() == kafka.ErrNoError {
		return nil
	}
	return ad.last
}

// createTopics makes one attempt of at most per (less if ctx ends first).
// It returns nil when every topic exists.
func (ad *admin) createTopics(ctx context.Context, specs []kafka.TopicSpecification, per time.Duration) error {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < per {
		per = max(time.Until(d), time.Millisecond)
	}
	// librdkafka is told the same limit, so it ends the request itself
	// (and answers with its own reason) rather than keep it queued after
	// we stopped waiting; the context, a little longer, is the backstop.
	// The broker is given half of it to finish creating the topics: if
	// that is not enough it answers REQUEST_TIMED_OUT while the creation
	// goes on, and the next attempt finds the topics there.
	actx, cancel := context.WithTimeout(ctx, per+time.Second)
	defer cancel()
	res, err := ad.a.CreateTopics(actx, specs,
		kafka.SetAdminRequestTimeout(per), kafka.SetAdminOperationTimeout(per/2))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("no answer within %s", per)
		}
		return err
	}
	var errs []error
	for _, r := range res {
		code := r.Error.Code()
		if code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
			errs = append(errs, fmt.Errorf("create topic %s: %w", r.Topic, r.Error))
		}
	}
	return errors.Join(errs...)
}

// close releases the client; the goroutines reading its channels have
// ended when it returns.
func (ad *admin) close() {
	ad.a.Close()
	ad.p.Close()
	ad.wg.Wait()
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
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		tv, err := goTyped(k, v)
		if err != nil {
			return nil, err
		}
		m[k] = tv
	}
	return m, nil
}

// goTyped converts the value of one of confluent-kafka-go's own "go."
// properties to the type it requires: unlike librdkafka, it reads these in
// Go and refuses a string ("go.logs.channel.enable expects type bool, not
// string"), so without this -kafka-config could not set them at all.
// Other values are returned as they are.
func goTyped(k, v string) (kafka.ConfigValue, error) {
	switch k {
	case "go.logs.channel.enable", "go.delivery.reports", "go.batch.producer",
		"go.application.rebalance.enable", "go.events.channel.enable":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("kafka config %s=%s: want true or false", k, v)
		}
		return b, nil
	case "go.events.channel.size", "go.produce.channel.size":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("kafka config %s=%s: want a number", k, v)
		}
		return n, nil
	case "go.logs.channel":
		return nil, fmt.Errorf("kafka config %s: takes a Go channel, set in code only", k)
	}
	return v, nil
}
