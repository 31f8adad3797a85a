package conntable

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkShards drives a table of 100,000 connections the way a busy
// gateway does, for each shard count from 1 to 256: many goroutines look
// up push targets (90%), reconnect users (remove + add, 5%) and list a
// user's devices (5%), while a sweeper walks the shards without pause
// (the worst case of the timeout sweep and the route refresh, which hold
// a shard's read lock while they scan it). It reports the time per
// operation, the share of lock acquisitions that had to wait, the mean
// wait, and how long one shard's sweep took on average (it holds the
// shard's read lock throughout, and includes the time the sweeping
// goroutine waited for a CPU). docs/TUNING.md turns the numbers into
// advice.
func BenchmarkShards(b *testing.B) {
	const users = 100_000
	for _, shards := range []int{1, 2, 4, 8, 16, 32, 64, 128, 256} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			tb, _ := New[*fakeConn](shards)
			conns := make([]*fakeConn, users)
			for i := range conns {
				conns[i] = &fakeConn{id: int64(i + 1), uid: fmt.Sprintf("user-%d", i)}
				tb.Add(conns[i])
			}
			// Reconnects swap in a fresh connection per user; keep them
			// apart per goroutine so each user is touched by one writer.
			var owner sync.Map
			sw := NewSweeper(tb, SweepConfig[*fakeConn]{
				Due:    func(c *fakeConn, _ time.Time) bool { return c.lastSeen.Load() < 0 },
				Expire: func(*fakeConn, time.Time) {},
			})
			ctx, cancel := context.WithCancel(context.Background())
			var sweepNS, sweeps atomic.Int64
			var swg sync.WaitGroup
			swg.Add(1)
			go func() {
				defer swg.Done()
				for i := 0; ctx.Err() == nil; i = (i + 1) % shards {
					t0 := time.Now()
					sw.SweepShard(i)
					sweepNS.Add(int64(time.Since(t0)))
					sweeps.Add(1)
				}
			}()
			var before, after [2]uint64
			stats := func() (c, w uint64) {
				for i := 0; i < shards; i++ {
					st := tb.Stats(i)
					c += st.Contended
					w += uint64(st.Wait)
				}
				return
			}
			before[0], before[1] = stats()
			var gid atomic.Int64
			var ops atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := int(gid.Add(1))
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				var buf []*fakeConn
				n := int64(0)
				for pb.Next() {
					n++
					i := rng.IntN(users)
					switch r := rng.IntN(100); {
					case r < 90:
						tb.Push(conns[i].uid, conns[i].id)
					case r < 95:
						// Reconnect: only the goroutine that owns user i.
						if o, loaded := owner.LoadOrStore(i, g); loaded && o.(int) != g {
							tb.Push(conns[i].uid, conns[i].id)
							continue
						}
						c := conns[i]
						tb.Remove(c)
						tb.Add(c)
					default:
						buf = tb.ByUID(conns[i].uid, buf[:0])
					}
				}
				ops.Add(n)
			})
			b.StopTimer()
			cancel()
			swg.Wait()
			after[0], after[1] = stats()
			// Lock acquisitions: about one per op, plus the sweeper's.
			contended := after[0] - before[0]
			wait := time.Duration(after[1] - before[1])
			total := float64(ops.Load())
			b.ReportMetric(100*float64(contended)/total, "%contended")
			if contended > 0 {
				b.ReportMetric(float64(wait.Nanoseconds())/float64(contended), "ns/wait")
			}
			if n := sweeps.Load(); n > 0 {
				b.ReportMetric(float64(sweepNS.Load())/float64(n)/1000, "µs/shard-sweep")
			}
		})
	}
}
