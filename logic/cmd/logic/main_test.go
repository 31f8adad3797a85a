package main

import (
	"strings"
	"testing"
	"time"
)

// Settings that would make every Connect, every token or every recall fail
// are refused at startup.
func TestCheckOptions(t *testing.T) {
	ok := options{tokenTTL: 24 * time.Hour, routeTTL: 10 * time.Minute, recallWindow: 2 * time.Minute}
	if err := ok.check(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*options)
		flag string // named in the error; "" when accepted
	}{
		{func(o *options) { o.routeTTL = time.Second }, ""},
		{func(o *options) { o.routeTTL = 24 * time.Hour }, ""},
		{func(o *options) { o.routeTTL = 48 * time.Hour }, "-route-ttl"}, // dataproxy refuses over 86400 s
		{func(o *options) { o.routeTTL = 24*time.Hour + time.Second }, "-route-ttl"},
		{func(o *options) { o.routeTTL = 999 * time.Millisecond }, "-route-ttl"}, // would be 0 s, dataproxy's default
		{func(o *options) { o.routeTTL = 0 }, "-route-ttl"},
		{func(o *options) { o.routeTTL = -time.Minute }, "-route-ttl"},
		{func(o *options) { o.recallWindow = 0 }, ""},
		{func(o *options) { o.recallWindow = -time.Second }, "-recall-window"},
		{func(o *options) { o.tokenTTL = time.Second }, ""},
		{func(o *options) { o.tokenTTL = 0 }, "-token-ttl"},
		{func(o *options) { o.tokenTTL = -time.Hour }, "-token-ttl"},
	} {
		o := ok
		tc.mod(&o)
		err := o.check()
		switch {
		case tc.flag == "" && err != nil:
			t.Errorf("token-ttl %v, route-ttl %v, recall-window %v refused: %v", o.tokenTTL, o.routeTTL, o.recallWindow, err)
		case tc.flag != "" && (err == nil || !strings.Contains(err.Error(), tc.flag)):
			t.Errorf("token-ttl %v, route-ttl %v, recall-window %v: error %v, want one naming %s",
				o.tokenTTL, o.routeTTL, o.recallWindow, err, tc.flag)
		}
	}
}
