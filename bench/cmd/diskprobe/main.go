// Command diskprobe measures how long the disk under a directory takes to
// make writes durable, the way the embedded store's commits need it.
//
// Every commit of the SQLite store (with -sqlite-sync full, the default)
// appends its pages to the write-ahead log and waits for fsync before any
// message in it is acknowledged or pushed; every append queued behind it
// waits too. So a slow fsync is a stall of the whole message path, and
// the one-to-one benchmark's p99 can be no better than the disk's. This
// tool writes -size bytes and calls fsync, -rate times a second for
// -duration, into a scratch file in -dir (reusing its first -span bytes,
// as the store reuses its log), and prints the distribution of the times
// and every sync slower than -slow, with when it came.
//
//	diskprobe -dir data/dataproxy -duration 60s
//
// Run it on a quiet machine, where the store's files live; it stops by
// itself (or on Ctrl-C, reporting what it measured) and removes its file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/bench/internal/latency"
)

type options struct {
	dir      string
	size     int
	span     int64
	rate     int
	duration time.Duration
	slow     time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("diskprobe", flag.ExitOnError)
	fs.StringVar(&o.dir, "dir", ".", "directory on the disk to probe (where the store's files live)")
	fs.IntVar(&o.size, "size", 256<<10, "bytes written before each fsync (a commit's log pages: about 2 pages of 4 KiB per conversation it touches)")
	fs.Int64Var(&o.span, "span", 64<<20, "bytes of the scratch file the writes cycle through")
	fs.IntVar(&o.rate, "rate", 100, "fsyncs per second (the store commits up to a few hundred times a second)")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to probe")
	fs.DurationVar(&o.slow, "slow", 20*time.Millisecond, "list every fsync slower than this")
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "diskprobe:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	switch {
	case o.size < 1:
		return errors.New("-size must be at least 1")
	case o.span < int64(o.size):
		return errors.New("-span must be at least -size")
	case o.rate < 1 || o.rate > 100_000:
		return errors.New("-rate must be 1 to 100000")
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	}
	return nil
}

// slowSync is one fsync over -slow: when its write started, and how long
// the write and the sync took.
type slowSync struct {
	at   time.Time
	took time.Duration
}

// run probes until o.duration is over or ctx is cancelled, reports what
// it measured (also when a write or sync failed part way), and removes
// its file.
func run(ctx context.Context, o options, out io.Writer) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	f, err := os.CreateTemp(o.dir, "diskprobe-*")
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	}()
	// Allocate the span first, so the timed writes overwrite blocks the
	// file has, as the store's log does once it has grown.
	if err := fill(f, o.span); err != nil {
		return err
	}
	lat, slow, err := probe(ctx, f, o)
	if lat.Count() > 0 {
		report(out, o, lat, slow)
	}
	return err
}

// fill writes span bytes (not zeros, which a compressing file system
// would not store) and syncs them.
func fill(f *os.File, span int64) error {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for off := int64(0); off < span; off += int64(len(buf)) {
		n := min(int64(len(buf)), span-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// probe writes and syncs at o.rate until o.duration is over. A sync that
// overruns its slot delays the next, as a slow commit delays the one
// queued behind it; the schedule does not try to catch up.
func probe(ctx context.Context, f *os.File, o options) (latency.Summary, []slowSync, error) {
	var rec latency.Recorder
	var slow []slowSync
	buf := make([]byte, o.size)
	for i := range buf {
		buf[i] = byte(i)
	}
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	defer tick.Stop()
	start := time.Now()
	off := int64(0)
	for time.Since(start) < o.duration {
		select {
		case <-ctx.Done():
			return rec.Snapshot(), slow, nil
		case <-tick.C:
		}
		t0 := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return rec.Snapshot(), slow, err
		}
		if err := f.Sync(); err != nil {
			return rec.Snapshot(), slow, err
		}
		took := time.Since(t0)
		rec.Add(took)
		if took > o.slow {
			slow = append(slow, slowSync{at: t0, took: took})
		}
		if off += int64(o.size); off+int64(o.size) > o.span {
			off = 0
		}
	}
	return rec.Snapshot(), slow, nil
}

func report(out io.Writer, o options, lat latency.Summary, slow []slowSync) {
	fmt.Fprintf(out, "write of %d bytes + fsync, %d a second for up to %v, in %s\n\n", o.size, o.rate, o.duration, o.dir)
	fmt.Fprint(out, latency.TableHeader)
	lat.Table(out, "write+fsync")
	fmt.Fprintln(out)
	for _, over := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		n := 0
		for _, s := range slow {
			if s.took > over {
				n++
			}
		}
		if over >= o.slow {
			fmt.Fprintf(out, "over %v: %d\n", over, n)
		}
	}
	if len(slow) > 0 {
		// Wall-clock times (UTC), to match with other tools' logs, for
		// example the trace of bench p2p -trace, which says the time its
		// offsets count from.
		fmt.Fprintf(out, "\nslower than %v (when the write started, UTC: took):\n", o.slow)
		for _, s := range slow {
			fmt.Fprintf(out, "  %s: %s ms\n", s.at.UTC().Format("15:04:05.000"), latency.Ms(s.took))
		}
	}
	fmt.Fprintln(out, "\nEach commit waits for one such sync, and every append queued behind it waits too: at 5,000 msg/s a 100 ms sync holds about 500 messages.")
}
