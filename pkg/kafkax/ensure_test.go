package kafkax

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EnsureTopics connects with the same settings as the producers: against a
// broker that requires SASL, the -kafka-config credentials get the topics
// created (before, the admin client took the broker address only and
// retried until its deadline).
func TestEnsureTopicsUsesTheKafkaConfig(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "gochat", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	common := Common{Brokers: c.ListenAddrs()[0], Extra: kafka.ConfigMap{
		"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
		"sasl.username": "gochat", "sasl.password": "pw",
		// A consumer setting in -kafka-config must not stop the admin
		// client from starting (librdkafka refuses it in a producer), nor
		// one of confluent-kafka-go's own (TUNING.md documents these).
		"group.instance.id":      "ignored-here",
		"go.events.channel.size": 5000,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, common, TopicSpec{Name: "gochat.task", Partitions: 3}); err != nil {
		t.Fatalf("EnsureTopics with SASL settings: %v", err)
	}
	// Without the credentials the broker refuses the client: the check
	// above is about the settings, not an open broker.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := EnsureTopics(ctx2, Common{Brokers: common.Brokers}, TopicSpec{Name: "other", Partitions: 1}); err == nil {
		t.Fatal("the broker created a topic for a client without credentials")
	}
}

// A producer whose instance fails fatally is replaced, and so is the
// replacement if it fails while the first instance is still being
// released (librdkafka reports a fatal error once per instance, so a
// report ignored then would leave every later send failing).
func TestProducerRecreatedAfterEachFatalError(t *testing.T) {
	pr := testProducer(t)
	current := pr.current
	replaced := func(old *kafka.Producer) *kafka.Producer {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if p := current(); p != old {
				return p
			}
		}
		t.Fatal("the producer was not replaced after a fatal error")
		return nil
	}
	p1 := current()
	p1.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "test: first instance fails")
	p2 := replaced(p1)
	// At once, while p1 is being purged and closed.
	p2.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "test: replacement fails too")
	replaced(p2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pr.SendAll(ctx, []Msg{{Topic: "t", Key: []byte("k"), Value: []byte("v")}}); err != nil {
		t.Fatalf("send after two fatal errors: %v", err)
	}
}

// Every message queued on an instance that fails fatally gets its
// callback: the purge's reports are served before the instance is
// closed. Before, Close right after the purge dropped the reports still
// queued, and logic's worker waited for them for ever.
func TestFatalErrorReportsEveryQueuedMessage(t *testing.T) {
	pr := testProducer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pr.SendAll(ctx, []Msg{{Topic: "t", Key: []byte("k"), Value: []byte("warm-up")}}); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	reports := make(chan error, n)
	val := make([]byte, 200)
	for i := range n {
		if err := pr.Produce("t", fmt.Appendf(nil, "%d", i%50), val, func(err error) { reports <- err }); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	pr.current().TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "test: fails with messages queued")
	failed := 0
	for i := range n {
		select {
		case err := <-reports:
			if err != nil {
				failed++
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d callbacks never ran (%d of those that ran failed)", n-i, n, failed)
		}
	}
	if failed == 0 {
		t.Log("the instance delivered everything before it failed; the purge path was not exercised")
	}
}

// testProducer is a Producer on an in-process broker with the topic "t",
// both closed when the test ends.
func testProducer(t *testing.T) *Producer {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	pr, err := NewProducer(Common{Brokers: c.ListenAddrs()[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pr.Close)
	return pr
}

// current is the producer's librdkafka instance now.
func (pr *Producer) current() *kafka.Producer {
	pr.mu.RLock()
	defer pr.mu.RUnlock()
	return pr.p
}
