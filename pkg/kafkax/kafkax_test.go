package kafkax

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestConfigSplit(t *testing.T) {
	extra, err := ParseConfig("heartbeat.interval.ms=300, group.instance.id=a,linger.ms=5,socket.timeout.ms=1000")
	if err != nil {
		t.Fatal(err)
	}
	c := Common{Brokers: "127.0.0.1:9092", Extra: extra}
	p := c.ProducerConfig()
	for _, k := range []string{"heartbeat.interval.ms", "group.instance.id"} {
		if _, ok := p[k]; ok {
			t.Errorf("producer config has consumer property %s", k)
		}
	}
	if p["linger.ms"] != "5" || p["socket.timeout.ms"] != "1000" || p["enable.idempotence"] != true {
		t.Errorf("producer config: %v", p)
	}
	if p["go.events.channel.size"] != 10000 || p["go.produce.channel.size"] != 1000 {
		t.Errorf("producer config: Go-side channels %v / %v, want 10000 / 1000", p["go.events.channel.size"], p["go.produce.channel.size"])
	}
	extra["go.events.channel.size"] = "50000"
	if p := (Common{Brokers: "127.0.0.1:9092", Extra: extra}).ProducerConfig(); p["go.events.channel.size"] != "50000" {
		t.Errorf("an operator's go.events.channel.size was not kept: %v", p["go.events.channel.size"])
	}
	if p["socket.nagle.disable"] != true {
		t.Errorf("producer config: Nagle not disabled: %v", p["socket.nagle.disable"])
	}
	cc := c.ConsumerConfig("g")
	if cc["socket.nagle.disable"] != true {
		t.Errorf("consumer config: Nagle not disabled: %v", cc["socket.nagle.disable"])
	}
	if cc["heartbeat.interval.ms"] != "300" || cc["group.id"] != "g" || cc["enable.auto.offset.store"] != false {
		t.Errorf("consumer config: %v", cc)
	}
	if _, err := ParseConfig("novalue"); err == nil {
		t.Error("ParseConfig accepted a property without value")
	}
	var _ kafka.ConfigMap = p
}

func TestDownTopic(t *testing.T) {
	if DownTopic("gw7") != "gochat.down.gw7" {
		t.Fatal(DownTopic("gw7"))
	}
}

// WithLinger sets the producer's linger unless the operator did, and leaves
// the Common it was called on alone.
func TestWithLinger(t *testing.T) {
	c := Common{Brokers: "b", Extra: kafka.ConfigMap{"socket.timeout.ms": "1000"}}
	p := c.WithLinger(0).ProducerConfig()
	if p["linger.ms"] != 0 || p["socket.timeout.ms"] != "1000" {
		t.Fatalf("producer config: %v", p)
	}
	if _, ok := c.Extra["linger.ms"]; ok || c.ProducerConfig()["linger.ms"] != 1 {
		t.Fatalf("the original changed: %v", c.Extra)
	}
	if p := (Common{Brokers: "b"}).WithLinger(0).ProducerConfig(); p["linger.ms"] != 0 {
		t.Fatalf("without Extra: %v", p["linger.ms"])
	}
	for _, k := range []string{"linger.ms", "queue.buffering.max.ms"} {
		op := Common{Brokers: "b", Extra: kafka.ConfigMap{k: "5"}}
		if p := op.WithLinger(0).ProducerConfig(); p[k] != "5" || (k != "linger.ms" && p["linger.ms"] != 1) {
			t.Errorf("an operator's %s=5 was not kept: %v", k, p)
		}
	}
}
