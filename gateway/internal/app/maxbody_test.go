package app

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/gochat-im/gochat/gateway/internal/server"
	"github.com/gochat-im/gochat/pkg/kafkax"
)

// New refuses a -max-body that does not fit in one record of the
// producer: its message.max.bytes as -kafka-config sets it (a string, as
// kafkax.ParseConfig gives it, or a number), or librdkafka's default of
// 1,000,000. A bad message.max.bytes is refused too. Nothing is started.
func TestNewChecksMaxBodyAgainstKafka(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name  string
		extra kafka.ConfigMap
		body  int
		ok    bool
		want  string // in the error
	}{
		{"default fits", nil, 4096, true, ""},
		{"2 MiB over librdkafka's default", nil, 2 << 20, false, "message.max.bytes 1000000"},
		{"2 MiB with message.max.bytes raised", kafka.ConfigMap{"message.max.bytes": "4000000"}, 2 << 20, true, ""},
		{"as a number", kafka.ConfigMap{"message.max.bytes": 4000000}, 2 << 20, true, ""},
		{"lowered below the body", kafka.ConfigMap{"message.max.bytes": "5000"}, 4096, false, "message.max.bytes 5000"},
		{"not a number", kafka.ConfigMap{"message.max.bytes": "lots"}, 4096, false, "message.max.bytes=lots"},
	} {
		_, err := New(Config{
			Server:         server.Config{ID: "gw1", Listen: "127.0.0.1:0", MaxFrame: 4 << 20, MaxBody: tc.body},
			TokenSecrets:   [][]byte{[]byte("s")},
			Etcd:           []string{"127.0.0.1:1"},
			Kafka:          kafkax.Common{Brokers: "127.0.0.1:1", Extra: tc.extra},
			DownPartitions: 1,
			UpPartitions:   2,
			RegistryTTL:    10 * time.Second,
		}, log)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestNewRefusesPartitionCountsBelowOne(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct{ down, up int }{{0, 16}, {4, 0}, {-1, 16}, {4, -2}} {
		_, err := New(Config{
			Server:         server.Config{ID: "gw1", Listen: "127.0.0.1:0"},
			TokenSecrets:   [][]byte{[]byte("s")},
			Etcd:           []string{"127.0.0.1:1"},
			Kafka:          kafkax.Common{Brokers: "127.0.0.1:1"},
			DownPartitions: tc.down,
			UpPartitions:   tc.up,
			RegistryTTL:    10 * time.Second,
		}, log)
		if err == nil || !strings.Contains(err.Error(), "partitions") {
			t.Errorf("down %d, up %d: error %v, want one about partitions", tc.down, tc.up, err)
		}
	}
}
