package server

import (
	"strings"
	"testing"

	"github.com/gochat-im/gochat/gateway/internal/downstream"
)

// A write queue too small for one BATCH record's frames to a connection is
// refused at start-up rather than closing healthy clients as slow.
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
