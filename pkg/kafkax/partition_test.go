package kafkax

import (
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestPartitionMatchesLibrdkafka produces keyed records through librdkafka
// (against its in-process mock cluster) with the producers' settings and
// checks that each landed where Partition says.
func TestPartitionMatchesLibrdkafka(t *testing.T) {
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for _, parts := range []int{1, 4, 7, 64} {
		topic := fmt.Sprintf("partition-test-%d", parts)
		if err := mc.CreateTopic(topic, parts, 1); err != nil {
			t.Fatal(err)
		}
		cfg := Common{Brokers: mc.BootstrapServers()}.ProducerConfig()
		p, err := kafka.NewProducer(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		keys := []string{"a", "ab", "abc", "abcd", "abcde", "p:alice:bob", "g:0123456789abcdef", "ünïcode"}
		for i := range 300 {
			keys = append(keys, fmt.Sprintf("p:user-%d:user-%d", i, i*7+3))
		}
		for _, k := range keys {
			err := p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key:            []byte(k), Value: []byte("v"), Opaque: k,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
		timeout := time.After(20 * time.Second)
		for range keys {
			select {
			case ev := <-p.Events():
				m, ok := ev.(*kafka.Message)
				if !ok {
					t.Fatalf("event %v", ev)
				}
				if m.TopicPartition.Error != nil {
					t.Fatal(m.TopicPartition.Error)
				}
				k := m.Opaque.(string)
				if want := Partition([]byte(k), parts); m.TopicPartition.Partition != want {
					t.Errorf("%d partitions: key %q went to %d, Partition says %d", parts, k, m.TopicPartition.Partition, want)
				}
			case <-timeout:
				t.Fatal("no delivery reports")
			}
		}
		p.Close()
	}
}
