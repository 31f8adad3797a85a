package main

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// defaults returns the options the flags give when only the two required
// secrets are set.
func defaults(t *testing.T) options {
	t.Helper()
	var o options
	fs := flag.NewFlagSet("logic", flag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse([]string{"-token-secret", "t", "-admin-secret", "a"}); err != nil {
		t.Fatal(err)
	}
	return o
}

// Settings that would make every Connect, every token, every recall or
// every dataproxy call fail, and counts that have no meaning, are refused
// at startup with an error naming the flag and the value.
func TestCheckOptions(t *testing.T) {
	ok := defaults(t)
	if err := ok.check(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	if ok.policy["phone"] != true {
		t.Fatalf("check did not parse the default -login-policy: %v", ok.policy)
	}
	for _, tc := range []struct {
		mod func(*options)
		err string // the error; "" when accepted
	}{
		{func(o *options) { o.routeTTL = time.Second }, ""},
		{func(o *options) { o.routeTTL = 24 * time.Hour }, ""},
		{func(o *options) { o.routeTTL = 48 * time.Hour }, "-route-ttl 48h0m0s: must be from 1s to 24h0m0s (what dataproxy accepts)"}, // dataproxy refuses over 86400 s
		{func(o *options) { o.routeTTL = 24*time.Hour + time.Second }, "-route-ttl 24h0m1s: must be from 1s to 24h0m0s (what dataproxy accepts)"},
		{func(o *options) { o.routeTTL = 999 * time.Millisecond }, "-route-ttl 999ms: must be from 1s to 24h0m0s (what dataproxy accepts)"}, // would be 0 s, dataproxy's default
		{func(o *options) { o.routeTTL = 0 }, "-route-ttl 0s: must be from 1s to 24h0m0s (what dataproxy accepts)"},
		{func(o *options) { o.routeTTL = -time.Minute }, "-route-ttl -1m0s: must be from 1s to 24h0m0s (what dataproxy accepts)"},
		{func(o *options) { o.recallWindow = 0 }, ""},
		{func(o *options) { o.recallWindow = -time.Second }, "-recall-window -1s: must not be negative"},
		{func(o *options) { o.tokenTTL = time.Second }, ""},
		{func(o *options) { o.tokenTTL = 0 }, "-token-ttl 0s: must be more than 0"},
		{func(o *options) { o.tokenTTL = -time.Hour }, "-token-ttl -1h0m0s: must be more than 0"},
		{func(o *options) { o.tokenSecret = "" }, "both -token-secret and -admin-secret are required"},
		{func(o *options) { o.tokenSecret = " , " }, "both -token-secret and -admin-secret are required"},
		{func(o *options) { o.adminSecret = "" }, "both -token-secret and -admin-secret are required"},
		// -rpc-timeout 0 is rpcx's documented default (3s); negative
		// would fail every dataproxy call.
		{func(o *options) { o.rpcTimeout = 0 }, ""},
		{func(o *options) { o.rpcTimeout = time.Millisecond }, ""},
		{func(o *options) { o.rpcTimeout = -time.Second }, "-rpc-timeout -1s: must not be negative (0 means 3s)"},
		{func(o *options) { o.registryTTL = time.Second }, ""},
		{func(o *options) { o.registryTTL = 500 * time.Millisecond }, "-registry-ttl 500ms: must be at least 1s"},
		{func(o *options) { o.registryTTL = -time.Second }, "-registry-ttl -1s: must be at least 1s"},
		// Counts: 0 was silently the default before; now it is refused.
		{func(o *options) { o.maxBatch = 1 }, ""},
		{func(o *options) { o.maxBatch = 1000 }, ""},
		{func(o *options) { o.maxBatch = 1001 }, "-max-batch 1001: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{func(o *options) { o.maxBatch = 2000 }, "-max-batch 2000: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{func(o *options) { o.maxBatch = 0 }, "-max-batch 0: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{func(o *options) { o.maxBatch = -1 }, "-max-batch -1: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{func(o *options) {
			o.workers = 1
			o.maxInflight = 1
			o.upPartitions = 1
			o.taskPartitions = 1
			o.maxBody = 1
		}, ""},
		{func(o *options) { o.workers = 0 }, "-workers 0: must be more than 0"},
		{func(o *options) { o.workers = -4 }, "-workers -4: must be more than 0"},
		{func(o *options) { o.maxInflight = 0 }, "-max-inflight 0: must be more than 0"},
		{func(o *options) { o.maxInflight = -1 }, "-max-inflight -1: must be more than 0"},
		{func(o *options) { o.upPartitions = 0 }, "-up-partitions 0: must be more than 0"},
		{func(o *options) { o.taskPartitions = -8 }, "-task-partitions -8: must be more than 0"},
		{func(o *options) { o.maxBody = 0 }, "-max-body 0: must be more than 0"},
		{func(o *options) { o.listen = "0.0.0.0:8900" }, ""},
		{func(o *options) { o.listen = ":8900"; o.advertise = "10.0.0.1:8900" }, ""},
		{func(o *options) { o.listen = "8900" }, `-listen "8900": want host:port (address 8900: missing port in address)`},
		{func(o *options) { o.listen = "" }, `-listen "": want host:port (missing port in address)`},
		{func(o *options) { o.advertise = "logic-1" }, `-advertise "logic-1": want host:port (address logic-1: missing port in address)`},
		{func(o *options) { o.loginPolicy = "phone=multi,bot=single" }, ""},
		{func(o *options) { o.loginPolicy = "phone=one" }, `-login-policy: login policy "phone=one": want kind=single or kind=multi`},
	} {
		o := ok
		o.policy = nil
		tc.mod(&o)
		err := o.check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v refused: %v", o, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("error %v, want %q", err, tc.err)
		}
	}
}

// The help of -rpc-timeout says what 0 means.
func TestRPCTimeoutHelp(t *testing.T) {
	var o options
	fs := flag.NewFlagSet("logic", flag.ContinueOnError)
	o.register(fs)
	if u := fs.Lookup("rpc-timeout").Usage; !strings.Contains(u, "0: 3s") {
		t.Fatalf("-rpc-timeout help %q does not say what 0 means", u)
	}
}
