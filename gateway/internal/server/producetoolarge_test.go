package server

import (
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/gateway/internal/upstream"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// tooLargeUp refuses every record as over Kafka's size limit: in the
// produce call (sync) or in its delivery report, as a broker or topic with
// a lower limit than the producer does.
type tooLargeUp struct{ sync bool }

func (u tooLargeUp) Send(_ *events.UpRecord, done func(error)) error {
	err := kafka.NewError(kafka.ErrMsgSizeTooLarge, "Broker: Message size too large", false)
	if u.sync {
		return err
	}
	go done(err)
	return nil
}

// A send or recall Kafka refuses as too large is answered 1004 too_large
// with its cmid, never 5003 unavailable: the client would retry it for
// ever. Either way the failure is counted.
func TestProduceTooLargeAnswered1004(t *testing.T) {
	for _, sync := range []bool{true, false} {
		e := startDeps(t, nil, func(d *Deps) { d.Up = tooLargeUp{sync: sync} })
		c, _ := connect(t, e, "alice")
		c.send(`{"type":"send","cmid":"m1","to":"bob","body":"hi"}`)
		c.send(`{"type":"recall","cmid":"r1","conv":"p:alice:bob","seq":3}`)
		// Delivery reports come in any order.
		got := map[string]bool{}
		for range 2 {
			var ef errFrame
			c.readJSON(&ef)
			if ef.Code != int32(errcode.TooLarge) {
				t.Fatalf("sync %v: got %+v, want too_large", sync, ef)
			}
			got[ef.CMID] = true
		}
		if !got["m1"] || !got["r1"] {
			t.Fatalf("sync %v: too_large for %v, want m1 and r1", sync, got)
		}
	}
}

// The same through a real librdkafka producer (no broker: nothing listens
// on loopback port 1), which checks message.max.bytes locally in the
// produce call: with the producer's limit set to 1000 bytes, a body of
// 3000 bytes (under the gateway's -max-body) is answered 1004 too_large.
// (Validate keeps -max-body within the producer's limit when it knows
// it; this is what a lower limit than the gateway was told gives.)
func TestProduceTooLargeLibrdkafka(t *testing.T) {
	p, err := kafkax.NewProducer(kafkax.Common{Brokers: "127.0.0.1:1",
		Extra: kafka.ConfigMap{"message.max.bytes": "1000", "log_level": "0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sink, _ := upstream.NewKafka(p)
	e := startDeps(t, nil, func(d *Deps) { d.Up = sink })
	c, _ := connect(t, e, "alice")
	c.send(`{"type":"send","cmid":"big-1","to":"bob","body":"` + strings.Repeat("x", 3000) + `"}`)
	var ef errFrame
	c.readJSON(&ef)
	if ef.Code != int32(errcode.TooLarge) || ef.CMID != "big-1" {
		t.Fatalf("got %+v, want too_large for big-1", ef)
	}
	c.expectNothing(200 * time.Millisecond)
}
