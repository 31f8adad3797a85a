// Package redistest gives tests a client of the real Redis (the one on
// 127.0.0.1:6379 that development machines and CI run) and a key prefix of
// their own, so that tests can share the server and clean up after
// themselves. For tests only.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Addr is the address of the Redis the tests use.
const Addr = "127.0.0.1:6379"

// Client returns a client of the Redis at Addr and a fresh random key
// prefix ("gochat_test_<hex>:"). When the test ends, every key under the
// prefix is deleted and the client closed. The test fails at once if Redis
// does not answer.
func Client(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: Addr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("Redis at %s: %v", Addr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "gochat_test_" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if err := DeletePrefix(context.Background(), rdb, prefix); err != nil {
			t.Errorf("delete test keys %s*: %v", prefix, err)
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// DeletePrefix deletes every key under prefix.
func DeletePrefix(ctx context.Context, rdb *redis.Client, prefix string) error {
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for lo := 0; lo < len(keys); lo += 1000 {
		if err := rdb.Del(ctx, keys[lo:min(lo+1000, len(keys))]...).Err(); err != nil {
			return err
		}
	}
	return nil
}
