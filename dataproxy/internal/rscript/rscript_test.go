package rscript

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

var echo = redis.NewScript(`return ARGV[1]`)

// Plain commands share the scripts' round trip and are sent once, also
// when a script has to be sent again after a NOSCRIPT.
func TestExecWithSendsPlainCommandsOnce(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	var round int
	for _, flush := range []bool{false, true, false} {
		round++
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var incr *redis.IntCmd
		cmds, err := ExecWith(ctx, rdb, func(p redis.Pipeliner) { incr = p.Incr(ctx, "n") },
			[]Call{{Script: echo, Args: []any{"a"}}, {Script: echo, Args: []any{"b"}}})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := incr.Result(); err != nil || n != int64(round) {
			t.Fatalf("round %d (flushed %v): counter %d %v: the plain command ran more or less than once", round, flush, n, err)
		}
		for i, want := range []string{"a", "b"} {
			if got, err := cmds[i].Text(); err != nil || got != want {
				t.Fatalf("round %d: script %d answered %q %v", round, i, got, err)
			}
		}
	}
	// Plain commands alone make one round trip too.
	var get *redis.StringCmd
	if _, err := ExecWith(ctx, rdb, func(p redis.Pipeliner) { get = p.Get(ctx, "n") }, nil); err != nil {
		t.Fatal(err)
	}
	if v, err := get.Result(); err != nil || v != "3" {
		t.Fatalf("GET n: %q %v", v, err)
	}
}
