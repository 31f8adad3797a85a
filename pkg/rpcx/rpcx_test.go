package rpcx

import (
	"strings"
	"testing"
	"time"
)

// A negative call timeout is refused (Kitex would fail every call at
// once); 0 is the documented default.
func TestClientOptionsTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		err     string // "" when accepted
	}{
		{0, ""},
		{time.Nanosecond, ""},
		{15 * time.Second, ""},
		{-time.Nanosecond, "rpc timeout -1ns: must not be negative (0 means 3s)"},
		{-time.Second, "rpc timeout -1s: must not be negative (0 means 3s)"},
	} {
		// HostPorts skips etcd: nothing is dialled.
		_, err := ClientOptions(ClientConfig{Service: DataProxyService, HostPorts: []string{"127.0.0.1:1"}, Timeout: tc.timeout})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("timeout %v refused: %v", tc.timeout, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("timeout %v: error %v, want %q", tc.timeout, err, tc.err)
		}
	}
}

// A lease TTL registry-etcd cannot express in whole seconds is refused
// before etcd is contacted.
func TestServerOptionsLeaseTTL(t *testing.T) {
	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, 999 * time.Millisecond} {
		_, err := ServerOptions(ServerConfig{Service: LogicService, Listen: "127.0.0.1:0", Etcd: []string{"127.0.0.1:1"}, LeaseTTL: ttl})
		if err == nil || !strings.HasPrefix(err.Error(), "lease TTL "+ttl.String()+": want 0") {
			t.Errorf("lease TTL %v: error %v", ttl, err)
		}
	}
}
