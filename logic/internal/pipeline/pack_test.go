package pipeline

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
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

// A push to more targets on one gateway than fit in one record goes out as
// several records, each under maxPackBytes, with the same key and every
// target exactly once, in order.
func TestFanoutSplitsLargeTargetLists(t *testing.T) {
	msg := &events.DownRecord{Kind: events.DownKind_PUSH, Message: &common.Message{ConvId: "g:big", Seq: 7, Body: strings.Repeat("x", 4096)}}
	for _, n := range []int{1, 100, 9000, 40000, 120000} {
		tg := newTargets()
		want := make([]string, 0, n)
		for i := range n {
			tg.put("gw-1", &events.Target{Uid: fmt.Sprintf("user-%06d", i), ConnId: int64(i)})
			want = append(want, fmt.Sprintf("user-%06d/%d", i, i))
		}
		out := fanoutDown(nil, "g:big", tg, msg)
		var got []string
		for _, m := range out {
			if len(m.Value) > maxPackBytes {
				t.Fatalf("n=%d: a record of %d bytes (bound %d)", n, len(m.Value), maxPackBytes)
			}
			if m.Topic != kafkax.DownTopic("gw-1") || string(m.Key) != "g:big" {
				t.Fatalf("n=%d: record to %s key %q", n, m.Topic, m.Key)
			}
			var rec events.DownRecord
			if err := kafkax.Decode(m.Value, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Kind != events.DownKind_PUSH || rec.Message.Seq != 7 || len(rec.Message.Body) != 4096 {
				t.Fatalf("n=%d: part carries %v seq %d body %d bytes", n, rec.Kind, rec.Message.Seq, len(rec.Message.Body))
			}
			for _, x := range rec.Targets {
				got = append(got, fmt.Sprintf("%s/%d", x.Uid, x.ConnId))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d: %d targets over %d records, not each once in order", n, len(got), len(out))
		}
		if n <= 100 && len(out) != 1 {
			t.Fatalf("n=%d: split into %d records", n, len(out))
		}
		t.Logf("%d targets: %d records", n, len(out))
	}
}
