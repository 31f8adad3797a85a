package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// TestConcurrentSendersKeepOrder: three devices write to one conversation
// at once, without waiting for acks. Sequence numbers are 1..N without a
// hole; each device sees pushes in increasing seq order and, with the acks
// of its own sends, every seq exactly once; sync returns the same history
// (DESIGN.md section 3, points 3 and 4).
func TestConcurrentSendersKeepOrder(t *testing.T) {
	const perDevice = 50
	e := startStack(t, stack.Config{Gateways: 2})
	devs := []*wsClient{
		connect(t, "alice/phone", e.url(0, e.token("alice", "phone"))),
		connect(t, "alice/web", e.url(1, e.token("alice", "web"))),
		connect(t, "bob/phone", e.url(1, e.token("bob", "phone"))),
	}
	to := []string{"bob", "bob", "alice"}
	for _, d := range devs {
		d.waitType(wait, protocol.TypeHello)
	}
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perDevice {
				if err := d.trySend(protocol.Send{Type: protocol.TypeSend, ClientMsgID: fmt.Sprintf("d%d-%d", i, j), To: to[i], Body: fmt.Sprintf("%d/%d", i, j)}); err != nil {
					t.Errorf("%s: %v", d.name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 3 * perDevice
	for i, d := range devs {
		seen := map[int64]bool{}
		for range perDevice {
			var a protocol.Ack
			d.waitType(wait, protocol.TypeAck).decode(t, &a)
			seen[a.Seq] = true
		}
		var prev int64
		for range total - perDevice {
			m := waitMsg(t, d)
			if m.Seq <= prev {
				t.Fatalf("%s: push seq %d after %d", d.name, m.Seq, prev)
			}
			prev = m.Seq
			seen[m.Seq] = true
		}
		for s := int64(1); s <= int64(total); s++ {
			if !seen[s] {
				t.Fatalf("%s (device %d) never saw seq %d", d.name, i, s)
			}
		}
	}
	// The pushes above went through batched downstream records (an ack
	// and a push, or a push and a copy, for one gateway travel in one
	// record): the order checks covered the batch path.
	if n := e.gatewayMetric(t, 1, `gochat_gateway_downstream_records_total{kind="batch"}`); n == 0 {
		t.Fatal("gateway 2 read no batch record")
	}
	r := e.syncRPC("alice", ids.P2P("alice", "bob"), 0)
	if len(r.Messages) != 100 || !r.HasMore {
		t.Fatalf("sync page: %d messages, has_more %v", len(r.Messages), r.HasMore)
	}
	r2 := e.syncRPC("alice", ids.P2P("alice", "bob"), 100)
	msgs := append(r.Messages, r2.Messages...)
	if len(msgs) != total {
		t.Fatalf("sync returned %d messages, want %d", len(msgs), total)
	}
	last := map[string]int{} // per sending device, its messages stay in send order
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("sync position %d has seq %d", i, m.Seq)
		}
		var dev, n int
		fmt.Sscanf(m.Body, "%d/%d", &dev, &n)
		key := fmt.Sprint(dev)
		if prev, ok := last[key]; ok && n != prev+1 {
			t.Fatalf("device %d's message %d stored after its message %d", dev, n, prev)
		}
		last[key] = n
	}
	// dataproxy's background checkpoints (every second by default) run
	// after the appends above, and none failed.
	deadline := time.Now().Add(wait)
	before := e.dataproxyMetric(t, "dataproxy_store_checkpoints_total")
	for e.dataproxyMetric(t, "dataproxy_store_checkpoints_total") <= before {
		if time.Now().After(deadline) {
			t.Fatal("no background checkpoint in dataproxy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := e.dataproxyMetric(t, "dataproxy_store_checkpoint_failures_total"); n != 0 {
		t.Fatalf("%v background checkpoints failed", n)
	}
	// The checkpoints report the log's length, which is never empty once
	// the store has written (a log starts over only with the frames of the
	// commit that restarts it).
	if n := e.dataproxyMetric(t, `dataproxy_store_wal_frames{shard="0"}`); n <= 0 {
		t.Fatalf("dataproxy_store_wal_frames %v after a checkpoint", n)
	}
	// The development stack's upstream topic has its own partition count
	// (created by logic or a gateway, whichever started first), and the
	// order above held over it.
	if n := topicPartitions(t, e.st.KafkaBrokers(), "gochat.up"); n != stack.DefaultUpPartitions {
		t.Fatalf("gochat.up has %d partitions, want %d", n, stack.DefaultUpPartitions)
	}
}

// topicPartitions asks the broker for a topic's partition count.
func topicPartitions(t *testing.T, brokers, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %v %+v", topic, err, resp)
	}
	return len(resp.Topics[0].Partitions)
}
