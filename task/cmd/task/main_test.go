package main

import (
	"flag"
	"os"
	"path/filepath"
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

// The -moderation-words file is read by check, before anything is
// contacted: a missing, unreadable or empty list, and a moderation job
// without the secret its recalls need, stop the service at once.
func TestCheckModerationSettings(t *testing.T) {
	dir := t.TempDir()
	words := filepath.Join(dir, "words.txt")
	empty := filepath.Join(dir, "empty.txt")
	latin1 := filepath.Join(dir, "latin1.txt")
	for path, text := range map[string]string{words: "# blocked\nspam\n\nBuy Now\n", empty: "# nothing yet\n\n", latin1: "caf\xe9\n"} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "nonexistent")
	for _, tc := range []struct {
		name string
		mod  func(*settings)
		err  string // "" when accepted
	}{
		{"no moderation", func(s *settings) {}, ""},
		{"words", func(s *settings) { s.modWords = words; s.recallSecret = "r" }, ""},
		{"url", func(s *settings) { s.modURL = "http://127.0.0.1:1/judge"; s.recallSecret = "r" }, ""},
		{"missing file", func(s *settings) { s.modWords = missing; s.recallSecret = "r" },
			"-moderation-words " + missing + ": open " + missing + ": no such file or directory"},
		{"directory", func(s *settings) { s.modWords = dir; s.recallSecret = "r" },
			"-moderation-words " + dir + ": read " + dir + ": is a directory"},
		{"empty list", func(s *settings) { s.modWords = empty; s.recallSecret = "r" },
			"-moderation-words " + empty + ": holds no word"},
		{"not UTF-8", func(s *settings) { s.modWords = latin1; s.recallSecret = "r" },
			"-moderation-words " + latin1 + ": moderation words: " + latin1 + " line 1 is not UTF-8"},
		{"words without recall secret", func(s *settings) { s.modWords = words },
			"-moderation-url and -moderation-words need -recall-secret (logic's -recall-secret or its admin secret)"},
		{"url without recall secret", func(s *settings) { s.modURL = "http://127.0.0.1:1/judge" },
			"-moderation-url and -moderation-words need -recall-secret (logic's -recall-secret or its admin secret)"},
	} {
		s := defaults(t)
		tc.mod(&s)
		err := s.check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	s := defaults(t)
	s.modWords, s.recallSecret = words, "r"
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.words, "|") != "spam|Buy Now" {
		t.Fatalf("check read %q from %s", s.words, words)
	}
}
