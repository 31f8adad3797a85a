package pipeline

import (
	"strings"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// maxPackBytes bounds the records packed into one BATCH record (Kafka
// refuses messages over message.max.bytes, 1 MB by default). A record
// larger than this on its own is produced alone.
const maxPackBytes = 256 << 10

// pack puts the downstream records of a batch that go to one partition of
// one gateway's topic into one BATCH record (or a few, by maxPackBytes), in
// their order, for the gateways that take batches (batches reports their
// topic's partition count). Each record goes to the partition its key maps
// to, as it would alone, so the order of every conversation's records is
// kept. Under load a batch of a few hundred messages then costs each
// gateway one Kafka record per partition instead of two per message (the
// ack and the push), which is most of what Kafka costs per message.
// Other records are returned as they are.
func pack(msgs []kafkax.Msg, batches func(gatewayID string) (int, bool)) []kafkax.Msg {
	type stream struct {
		topic string
		part  int32
	}
	type group struct {
		first int // index in out of the group's place
		msgs  []kafkax.Msg
	}
	var (
		out    = make([]kafkax.Msg, 0, len(msgs))
		groups map[stream]*group
		order  []*group
	)
	for _, m := range msgs {
		gw, ok := strings.CutPrefix(m.Topic, kafkax.DownTopic(""))
		n := 0
		if ok && len(m.Key) > 0 && !m.Pinned {
			n, ok = batches(gw)
		}
		if !ok || n <= 0 {
			out = append(out, m)
			continue
		}
		k := stream{m.Topic, kafkax.Partition(m.Key, n)}
		m.Pinned, m.Partition = true, k.part
		if groups == nil {
			groups = make(map[stream]*group)
		}
		g := groups[k]
		if g == nil {
			g = &group{first: len(out)}
			groups[k] = g
			order = append(order, g)
			out = append(out, kafkax.Msg{}) // the group's place
		}
		g.msgs = append(g.msgs, m)
	}
	if len(order) == 0 {
		return out
	}
	// Replace each group's place by its records, packed.
	final := make([]kafkax.Msg, 0, len(out))
	next := 0
	for _, g := range order {
		final = append(final, out[next:g.first]...)
		next = g.first + 1
		final = appendPacked(final, g.msgs)
	}
	return append(final, out[next:]...)
}

// appendPacked appends msgs (one topic and partition, in order) to out as
// BATCH records of at most maxPackBytes of records each; a run of one
// record stays as it is.
func appendPacked(out []kafkax.Msg, msgs []kafkax.Msg) []kafkax.Msg {
	for lo := 0; lo < len(msgs); {
		hi, size := lo+1, len(msgs[lo].Value)
		for hi < len(msgs) && size+len(msgs[hi].Value) <= maxPackBytes {
			size += len(msgs[hi].Value)
			hi++
		}
		if hi-lo == 1 {
			out = append(out, msgs[lo])
		} else {
			recs := make([][]byte, 0, hi-lo)
			for _, m := range msgs[lo:hi] {
				recs = append(recs, m.Value)
			}
			first := msgs[lo]
			out = append(out, kafkax.Msg{Topic: first.Topic, Key: first.Key, Pinned: true, Partition: first.Partition,
				Value: kafkax.Encode(&events.DownRecord{Kind: events.DownKind_BATCH, Records: recs})})
		}
		lo = hi
	}
	return out
}
