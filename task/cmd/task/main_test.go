package main

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// defaults returns the settings the flags give when none is set.
func defaults(t *testing.T) settings {
	t.Helper()
	var s settings
	fs := flag.NewFlagSet("task", flag.ContinueOnError)
	s.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// Values that have no meaning are refused at start, with an error naming
// the flag, instead of being replaced by defaults.
func TestCheckSettings(t *testing.T) {
	ok := defaults(t)
	if err := ok.check(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	if ok.taskPartitions != 8 {
		t.Fatalf("-task-partitions defaults to %d, want 8 like logic's", ok.taskPartitions)
	}
	for _, tc := range []struct {
		mod  func(*settings)
		flag string // named in the error; "" when accepted
	}{
		{func(s *settings) { s.workers = 1; s.maxInflight = 1; s.maxAttempts = 1; s.taskPartitions = 1 }, ""},
		{func(s *settings) { s.retryBase = time.Millisecond; s.retryMax = time.Millisecond }, ""},
		{func(s *settings) { s.workers = 0 }, "-workers"},
		{func(s *settings) { s.workers = -1 }, "-workers"},
		{func(s *settings) { s.maxInflight = 0 }, "-max-inflight"},
		{func(s *settings) { s.maxInflight = -5 }, "-max-inflight"},
		{func(s *settings) { s.maxAttempts = 0 }, "-max-attempts"},
		{func(s *settings) { s.maxAttempts = -1 }, "-max-attempts"},
		{func(s *settings) { s.taskPartitions = 0 }, "-task-partitions"},
		{func(s *settings) { s.taskPartitions = -8 }, "-task-partitions"},
		{func(s *settings) { s.retryBase = 0 }, "-retry-base"},
		{func(s *settings) { s.retryBase = -time.Second }, "-retry-base"},
		{func(s *settings) { s.retryMax = 0 }, "-retry-max"},
		{func(s *settings) { s.retryMax = -time.Second }, "-retry-max"},
		{func(s *settings) { s.retryMax = s.retryBase / 2 }, "-retry-max"},
		{func(s *settings) { s.webhookTimeout = 0 }, "-webhook-timeout"},
		{func(s *settings) { s.shutdownGrace = 0 }, "-shutdown-grace"},
		{func(s *settings) { s.shutdownGrace = -time.Second }, "-shutdown-grace"},
		{func(s *settings) { s.startupTimeout = 0 }, "-startup-timeout"},
	} {
		s := ok
		tc.mod(&s)
		err := s.check()
		switch {
		case tc.flag == "" && err != nil:
			t.Errorf("%+v refused: %v", s, err)
		case tc.flag != "" && (err == nil || !strings.Contains(err.Error(), tc.flag+" ")):
			t.Errorf("error %v, want one naming %s", err, tc.flag)
		}
	}
}
