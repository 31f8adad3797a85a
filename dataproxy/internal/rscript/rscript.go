// Package rscript runs batches of Redis Lua scripts in one round trip.
//
// The dataproxy's Redis updates are Lua scripts, so that each one is atomic
// with respect to the others (a route set and the membership it depends on
// change together). Many of them are sent at once in a pipeline of EVALSHA;
// a server that lost its script cache (a restart, SCRIPT FLUSH) answers
// NOSCRIPT, and only the calls that got that answer are sent again after
// the scripts are loaded, so no call runs twice.
//
// The scripts touch keys they compute from their arguments and from what
// they read (for example a group's route set named by a member's group
// set). That is fine on one Redis server or a primary with replicas, but
// not on Redis Cluster, where every key a script touches must be declared
// and live in one slot.
//
// Concurrency: the functions are safe for concurrent use.
package rscript

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Call is one run of a script.
type Call struct {
	Script *redis.Script
	Keys   []string
	Args   []any
}

// Exec runs calls in one pipeline and returns their commands in order. An
// error means the round trip failed (each command holds its own result
// otherwise: a script's error is in its command).
func Exec(ctx context.Context, rdb redis.Scripter, calls []Call) ([]*redis.Cmd, error) {
	return ExecWith(ctx, rdb, nil, calls)
}

// ExecWith is Exec with plain commands too: plain queues them on the
// pipeline ahead of the scripts, in the same round trip (they are sent once;
// only scripts are sent again after a NOSCRIPT). The caller keeps the
// commands plain creates and reads their results; an error reply to one of
// them stays in its command, as for scripts.
func ExecWith(ctx context.Context, rdb redis.Scripter, plain func(redis.Pipeliner), calls []Call) ([]*redis.Cmd, error) {
	if len(calls) == 0 && plain == nil {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	if err := run(ctx, rdb, plain, calls, cmds, nil); err != nil {
		return nil, err
	}
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return cmds, nil
	}
	loaded := map[*redis.Script]bool{}
	for _, i := range again {
		s := calls[i].Script
		if !loaded[s] {
			loaded[s] = true
			if err := s.Load(ctx, rdb).Err(); err != nil {
				return nil, fmt.Errorf("load script: %w", err)
			}
		}
	}
	if err := run(ctx, rdb, nil, calls, cmds, again); err != nil {
		return nil, err
	}
	return cmds, nil
}

// run sends the commands of plain (if any) and calls (only those at only,
// if given) and stores the calls' commands.
func run(ctx context.Context, rdb redis.Scripter, plain func(redis.Pipeliner), calls []Call, cmds []*redis.Cmd, only []int) error {
	p, ok := rdb.(interface{ Pipeline() redis.Pipeliner })
	if !ok {
		return fmt.Errorf("rscript: %T cannot pipeline", rdb)
	}
	pipe := p.Pipeline()
	if plain != nil {
		plain(pipe)
	}
	add := func(i int) {
		c := calls[i]
		cmds[i] = c.Script.EvalSha(ctx, pipe, c.Keys, c.Args...)
	}
	if only == nil {
		for i := range calls {
			add(i)
		}
	} else {
		for _, i := range only {
			add(i)
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !isReply(err) {
		return err
	}
	return nil
}

// isReply reports whether err is an error reply of the server to one
// command (kept in that command) rather than a failure of the round trip.
func isReply(err error) bool {
	_, ok := err.(redis.Error)
	return ok
}
