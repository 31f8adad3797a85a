package server

import (
	"strings"
	"testing"
	"time"

	"github.com/gochat-im/gochat/gateway/internal/downstream"
)

// A write queue below downstream.MinWriteQueue is refused at start-up: it
// would make the fan-out write to a connection's socket itself every few
// frames of a BATCH record (see downstream.MinWriteQueue).
func TestConfigRefusesSmallWriteQueue(t *testing.T) {
	for _, tc := range []struct {
		queue int
		ok    bool
	}{{0, true}, {downstream.MinWriteQueue, true}, {downstream.MinWriteQueue - 1, false}, {8, false}} {
		c := Config{ID: "gw1", Listen: "127.0.0.1:0", WriteQueue: tc.queue}
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("write queue %d: %v", tc.queue, err)
		}
		if err != nil && !strings.Contains(err.Error(), "write queue") {
			t.Errorf("write queue %d: error %q does not name the setting", tc.queue, err)
		}
	}
}

// A -max-body that cannot fit in one Kafka record (the producer's
// message.max.bytes, librdkafka's 1,000,000 by default, less
// RecordOverhead) is refused at start-up with an error naming both
// settings: the producer would refuse every such send. A larger MaxRecord
// (message.max.bytes raised in the Kafka settings) lets it through.
func TestConfigRefusesMaxBodyOverKafkaRecord(t *testing.T) {
	for _, tc := range []struct {
		body, record int
		ok           bool
	}{
		{4096, 0, true},
		{DefaultMaxRecord - RecordOverhead, 0, true},
		{DefaultMaxRecord - RecordOverhead + 1, 0, false},
		{2 << 20, 0, false},
		{2 << 20, 4 << 20, true},
		{4096, 4096, false},
	} {
		c := Config{ID: "gw1", Listen: "127.0.0.1:0", MaxFrame: 4 << 20, MaxBody: tc.body, MaxRecord: tc.record}
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("max body %d, max record %d: %v", tc.body, tc.record, err)
		}
		if err != nil && !(strings.Contains(err.Error(), "max body") && strings.Contains(err.Error(), "message.max.bytes")) {
			t.Errorf("max body %d: error %q does not name the settings", tc.body, err)
		}
	}
}

// -write-queue-bytes defaults to DefaultWriteQueueBytes and is refused
// outside 64 KiB to 1 GiB (the session counts bytes in 32 bits).
func TestConfigWriteQueueBytes(t *testing.T) {
	for _, tc := range []struct {
		bytes int
		ok    bool
	}{{0, true}, {minWriteQueueBytes, true}, {maxWriteQueueBytes, true}, {minWriteQueueBytes - 1, false}, {maxWriteQueueBytes + 1, false}, {-1, false}} {
		c := Config{ID: "gw1", Listen: "127.0.0.1:0", WriteQueueBytes: tc.bytes}
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("write queue bytes %d: %v", tc.bytes, err)
		}
		if err != nil && !strings.Contains(err.Error(), "write queue bytes") {
			t.Errorf("write queue bytes %d: error %q does not name the setting", tc.bytes, err)
		}
		if tc.bytes == 0 && c.WriteQueueBytes != DefaultWriteQueueBytes {
			t.Errorf("default write queue bytes %d, want %d", c.WriteQueueBytes, DefaultWriteQueueBytes)
		}
	}
}

// -register-flush must be positive and at most a second (every new
// connection waits that long for its hello); -register-batch 1 to 1000,
// logic's limit per Connect call. Zero takes the defaults.
func TestConfigRegisterBatching(t *testing.T) {
	for _, tc := range []struct {
		flush time.Duration
		batch int
		ok    bool
		names string
	}{
		{0, 0, true, ""},
		{time.Second, maxRegisterBatch, true, ""},
		{time.Second + 1, 0, false, "register flush"},
		{-time.Millisecond, 0, false, "register flush"},
		{0, maxRegisterBatch + 1, false, "register batch"},
		{0, -1, false, "register batch"},
	} {
		c := Config{ID: "gw1", Listen: "127.0.0.1:0", RegisterFlush: tc.flush, RegisterBatch: tc.batch}
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("flush %v batch %d: %v", tc.flush, tc.batch, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.names) {
			t.Errorf("flush %v batch %d: error %q does not name the setting", tc.flush, tc.batch, err)
		}
		if tc.ok && tc.flush == 0 && (c.RegisterFlush != 5*time.Millisecond || c.RegisterBatch != 500) {
			t.Errorf("defaults %v, %d", c.RegisterFlush, c.RegisterBatch)
		}
	}
}
