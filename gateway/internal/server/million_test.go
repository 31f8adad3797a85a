package server

import (
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/gochat-im/gochat/gateway/internal/session"
	"github.com/gochat-im/gochat/pkg/auth"
)

// tableServer builds a server (not started) whose connection table and
// sweeper the tests below fill with sessions that have no socket.
func tableServer(tb testing.TB, shards int) *Server {
	tb.Helper()
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Config{ID: "gwmem", Listen: "127.0.0.1:0", Shards: shards, RouteRefresh: -1},
		Deps{Logic: &fakeLogic{}, Up: &fakeUp{}, Verifier: v, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.writers.Close(); srv.rpc.Close() })
	return srv
}

// fill adds n authenticated sessions (user u<i>, device phone) to the
// table, as the handshake does, and returns them.
func fill(srv *Server, n int) []*session.Session {
	out := make([]*session.Session, n)
	for i := range out {
		s := session.New(srv.env, nil, int64(i+1))
		s.Upgraded("u"+strconv.Itoa(i), "phone")
		srv.table.Add(s)
		out[i] = s
	}
	return out
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// No goroutine (and so no per-connection reader or timer goroutine) is
// started per connection: 100,000 sessions in the table, swept, leave the
// goroutine count where it was.
func TestNoGoroutinePerConnection(t *testing.T) {
	srv := tableServer(t, 64)
	before := runtime.NumGoroutine()
	sessions := fill(srv, 100_000)
	srv.sweeper.SweepAll()
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines after adding %d sessions, %d before", after, len(sessions), before)
	}
	if srv.table.Len() != len(sessions) {
		t.Fatalf("table holds %d", srv.table.Len())
	}
}

// BenchmarkMillionSessions builds the connection table and session state
// of 1,000,000 connections in one process, without sockets (run it with
// -benchtime 1x), and reports the memory per entry, the pause of a full
// garbage collection with all of it live, and the time one sweeper pass
// over every connection takes (the work that replaces a timer per
// connection), with the longest a single shard's lock is held by it.
func BenchmarkMillionSessions(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		srv := tableServer(b, 256)
		base := heapAlloc()
		sessions := fill(srv, n)
		live := heapAlloc() - base

		var st debug.GCStats
		debug.ReadGCStats(&st)
		before := st.NumGC
		start := time.Now()
		runtime.GC()
		gcWall := time.Since(start)
		debug.ReadGCStats(&st)
		var pause time.Duration
		if st.NumGC > before {
			pause = st.Pause[0] // the most recent GC's stop-the-world pauses
		}

		start = time.Now()
		srv.sweeper.SweepAll()
		sweep := time.Since(start)
		var worst time.Duration
		for i := 0; i < srv.table.Shards(); i++ {
			t0 := time.Now()
			srv.sweeper.SweepShard(i)
			worst = max(worst, time.Since(t0))
		}

		b.ReportMetric(float64(live)/n, "bytes/entry")
		b.ReportMetric(float64(pause.Microseconds()), "gc-pause-µs")
		b.ReportMetric(float64(gcWall.Milliseconds()), "gc-wall-ms")
		b.ReportMetric(float64(sweep.Milliseconds()), "sweep-all-ms")
		b.ReportMetric(float64(worst.Microseconds()), "sweep-shard-max-µs")
		runtime.KeepAlive(sessions)
	}
}
