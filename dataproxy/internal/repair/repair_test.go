package repair

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func waitEmpty(t *testing.T, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still pending", q.Pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Keys queued while Redis is away are deleted when it answers again, and
// each once more an interval later (a rebuild racing the first deletion).
func TestDeletesWhenRedisReturns(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	q, err := New(Config{Interval: 30 * time.Millisecond}, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_ = m.Set("stale1", "x")
	_ = m.Set("stale2", "x")
	_ = m.Set("kept", "x")
	m.Close()
	q.Add("stale1", "stale2")
	time.Sleep(100 * time.Millisecond)
	if q.Pending() != 2 {
		t.Fatalf("%d pending while Redis is away", q.Pending())
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Exists("stale1") || m.Exists("stale2") {
		if time.Now().After(deadline) {
			t.Fatal("stale keys never deleted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = m.Set("stale1", "rebuilt from an old read")
	waitEmpty(t, q)
	if m.Exists("stale1") || !m.Exists("kept") {
		t.Fatalf("second pass: stale1 %v, kept %v", m.Exists("stale1"), m.Exists("kept"))
	}
	if q.deleted.Load() != 2 {
		t.Fatalf("deleted %d", q.deleted.Load())
	}
}

// The queue is bounded.
func TestBounded(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	q, err := New(Config{Interval: time.Hour, MaxKeys: 10}, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := range 15 {
		q.Add(fmt.Sprint("k", i))
	}
	q.Add("k1") // already queued: not dropped
	if q.Pending() != 10 || q.dropped.Load() != 5 {
		t.Fatalf("pending %d, dropped %d", q.Pending(), q.dropped.Load())
	}
	_ = context.Background()
}
