package pipeline

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// unpack returns what a gateway reads from msgs: per (topic, partition),
// the records in order, with BATCH records opened.
func unpack(t *testing.T, msgs []kafkax.Msg, parts map[string]int) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, m := range msgs {
		p := m.To()
		if p == kafka.PartitionAny {
			n := parts[m.Topic]
			if n == 0 {
				n = 1
			}
			p = kafkax.Partition(m.Key, n)
		} else if want := kafkax.Partition(m.Key, parts[m.Topic]); p != want {
			t.Fatalf("%s: pinned to %d, key %q maps to %d", m.Topic, p, m.Key, want)
		}
		s := fmt.Sprintf("%s/%d", m.Topic, p)
		var rec events.DownRecord
		if err := kafkax.Decode(m.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Kind != events.DownKind_BATCH {
			out[s] = append(out[s], m.Value)
			continue
		}
		if len(rec.Records) < 2 {
			t.Fatalf("a batch of %d records", len(rec.Records))
		}
		out[s] = append(out[s], rec.Records...)
	}
	return out
}

// pack keeps every record and the order of each partition's stream, pins
// records where their keys map, leaves gateways without batches and other
// topics alone, and splits batches at maxPackBytes.
func TestPack(t *testing.T) {
	parts := map[string]int{kafkax.DownTopic("gw1"): 4, kafkax.DownTopic("gw2"): 0, kafkax.DownTopic("gw3"): 2}
	batches := func(gw string) (int, bool) {
		n := parts[kafkax.DownTopic(gw)]
		return n, n > 0
	}
	var msgs []kafkax.Msg
	rec := func(topic, key string, seq int64, body int) {
		v := kafkax.Encode(&events.DownRecord{Kind: events.DownKind_FRAME, Frame: bytes.Repeat([]byte("x"), body), CloseCode: int32(seq)})
		msgs = append(msgs, kafkax.Msg{Topic: topic, Key: []byte(key), Value: v})
	}
	for i := range 300 {
		conv := fmt.Sprintf("p:u%d:u%d", i%17, i%17+1)
		rec(kafkax.DownTopic("gw1"), conv, int64(i), 10)
		rec(kafkax.DownTopic("gw2"), conv, int64(i), 10)
		rec(kafkax.DownTopic("gw3"), conv, int64(i), 10)
		if i%50 == 0 {
			rec(kafkax.TopicTask, conv, int64(i), 10)
		}
	}
	// Large records on gw3: a batch must be cut at maxPackBytes, and one
	// record over it goes alone.
	for i := range 6 {
		rec(kafkax.DownTopic("gw3"), "p:big:one", int64(1000+i), maxPackBytes/3)
	}
	rec(kafkax.DownTopic("gw3"), "p:big:one", 2000, maxPackBytes+10)

	got := pack(msgs, batches)
	want := unpack(t, msgs, parts)
	if have := unpack(t, got, parts); fmt.Sprint(have) != fmt.Sprint(want) {
		t.Fatal("the records read per partition differ after packing")
	}
	perTopic := map[string]int{}
	for _, m := range got {
		perTopic[m.Topic]++
		if len(m.Value) > maxPackBytes+1024 && !bytes.Contains(m.Value, bytes.Repeat([]byte("x"), maxPackBytes)) {
			t.Fatalf("a %d-byte record", len(m.Value))
		}
		if m.Topic == kafkax.DownTopic("gw2") || m.Topic == kafkax.TopicTask {
			if m.Pinned {
				t.Fatalf("%s record pinned", m.Topic)
			}
		} else if !m.Pinned {
			t.Fatalf("%s record not pinned", m.Topic)
		}
	}
	if perTopic[kafkax.DownTopic("gw1")] != 4 {
		t.Errorf("gw1 (4 partitions): %d records", perTopic[kafkax.DownTopic("gw1")])
	}
	if perTopic[kafkax.DownTopic("gw2")] != 300 || perTopic[kafkax.TopicTask] != 6 {
		t.Errorf("unbatched topics: %v", perTopic)
	}
	// gw3: at most two small-record batches, then 6 records of a third of
	// the limit in batches of two (a third record would pass it), then the
	// large one alone.
	if n := perTopic[kafkax.DownTopic("gw3")]; n < 5 || n > 6 {
		t.Errorf("gw3: %d records", n)
	}
}
