package pipeline

import (
	"log/slog"
	"testing"
	"time"
)

// 0 is each setting's documented default; a negative value, or a batch
// dataproxy would refuse, stops NewConsumer before it creates anything.
func TestConsumerConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg ConsumerConfig
		err string // "" when accepted
	}{
		{ConsumerConfig{}, ""},
		{ConsumerConfig{MaxBatch: 1, Workers: 1, MaxInflight: 1, Grace: time.Nanosecond}, ""},
		{ConsumerConfig{MaxBatch: 1000}, ""},
		{ConsumerConfig{MaxBatch: 1001}, "max batch 1001: dataproxy takes at most 1000 messages in one call"},
		{ConsumerConfig{MaxBatch: -1}, "max batch -1: must not be negative"},
		{ConsumerConfig{Workers: -4}, "workers -4: must not be negative"},
		{ConsumerConfig{MaxInflight: -1}, "max inflight -1: must not be negative"},
		{ConsumerConfig{Grace: -time.Second}, "grace -1s: must not be negative"},
	} {
		err := tc.cfg.Check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v refused: %v", tc.cfg, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.err)
		}
		if tc.err != "" {
			// NewConsumer refuses it before it touches Kafka (nil
			// processor and producer are never used).
			if _, err := NewConsumer(tc.cfg, nil, nil, slog.Default()); err == nil || err.Error() != tc.err {
				t.Errorf("NewConsumer(%+v): error %v, want %q", tc.cfg, err, tc.err)
			}
		}
	}
}
