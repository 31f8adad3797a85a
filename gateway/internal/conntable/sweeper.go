package conntable

import (
	"context"
	"time"
)

// SweepConfig tells a Sweeper what to look for.
type SweepConfig[C Conn[C]] struct {
	// Interval is the time one full pass over every shard takes; a
	// handshaking connection is looked at once per Interval, so handshake
	// timeouts fire up to one Interval late. Default 1 s.
	Interval time.Duration
	// ConnInterval is how often authenticated connections are looked at,
	// rounded up to a whole number of Intervals (default Interval). Their
	// timeouts (idle: tens of seconds) need less precision than the
	// handshake's, and at a million connections each pass costs real CPU.
	ConnInterval time.Duration
	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
	// Due reports whether c must be acted on at now. It runs under the
	// shard's read lock: it must only read c's atomics and return.
	Due func(c C, now time.Time) bool
	// Expire acts on a due connection (closes it), outside any lock.
	Expire func(c C, now time.Time)
}

// Sweeper replaces a timer per connection: one goroutine walks the shards
// round-robin, one shard per tick, so the cost is spread evenly over the
// interval and each shard lock is held only for one shard's scan.
//
// Concurrency: Run is one goroutine; SweepShard and SweepAll may be called
// by tests instead of Run, not alongside it.
type Sweeper[C Conn[C]] struct {
	t       *Table[C]
	cfg     SweepConfig[C]
	next    int
	pass    int // full passes done
	every   int // authenticated connections are swept every this many passes
	scratch []C
}

// NewSweeper returns a sweeper over t.
func NewSweeper[C Conn[C]](t *Table[C], cfg SweepConfig[C]) *Sweeper[C] {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	every := 1
	if cfg.ConnInterval > cfg.Interval {
		every = int((cfg.ConnInterval + cfg.Interval - 1) / cfg.Interval)
	}
	return &Sweeper[C]{t: t, cfg: cfg, every: every}
}

// SweepShard checks every connection of shard i once and returns how many
// expired.
func (s *Sweeper[C]) SweepShard(i int) int { return s.sweep(i, true) }

// sweep checks shard i's handshaking connections, and its authenticated
// ones too if conns is set.
func (s *Sweeper[C]) sweep(i int, conns bool) int {
	now := s.cfg.Now()
	due := s.scratch[:0]
	check := func(c C) bool {
		if s.cfg.Due(c, now) {
			due = append(due, c)
		}
		return true
	}
	if conns {
		s.t.Range(i, check)
	} else {
		s.t.RangePending(i, check)
	}
	for _, c := range due {
		s.cfg.Expire(c, now)
	}
	n := len(due)
	clear(due)
	if cap(due) > 4096 {
		due = nil // do not keep a burst's worth of memory for ever
	}
	s.scratch = due
	return n
}

// SweepAll checks every shard once.
func (s *Sweeper[C]) SweepAll() int {
	n := 0
	for i := 0; i < s.t.Shards(); i++ {
		n += s.SweepShard(i)
	}
	return n
}

// Run sweeps until ctx ends.
func (s *Sweeper[C]) Run(ctx context.Context) {
	shards := s.t.Shards()
	tick := s.cfg.Interval / time.Duration(shards)
	per := 1
	if tick < time.Millisecond {
		// Many shards, short interval: visit several shards per tick
		// rather than tick more than once a millisecond.
		per = int((time.Millisecond*time.Duration(shards) + s.cfg.Interval - 1) / s.cfg.Interval)
		tick = s.cfg.Interval * time.Duration(per) / time.Duration(shards)
	}
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			for k := 0; k < per; k++ {
				s.sweep(s.next, s.pass%s.every == 0)
				s.next++
				if s.next == shards {
					s.next = 0
					s.pass++
				}
			}
		}
	}
}
