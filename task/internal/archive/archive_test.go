package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
)

func task(conv string, seq, ts int64) *events.TaskRecord {
	return &events.TaskRecord{Kind: events.TaskKind_ARCHIVE, Archive: &common.Message{ConvId: conv, Seq: seq,
		Sender: "alice", Recipient: "bob", ClientMsgId: fmt.Sprint("c", seq), ContentType: "text",
		Body: fmt.Sprintf("message \"%d\"\n", seq), CreatedAtMs: ts}}
}

// openArchive returns an Archiver on dir, closed when the test ends.
func openArchive(t testing.TB, dir string) *Archiver {
	t.Helper()
	a, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// readLines returns the lines of every archive file under dir, by file
// (relative path).
func readLines(t *testing.T, dir string) map[string][]Line {
	t.Helper()
	out := map[string][]Line{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(dir, path)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return fmt.Errorf("%s: %q: %w", rel, sc.Text(), err)
			}
			out[rel] = append(out[rel], l)
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Tasks from many goroutines at once all end up on disk, once each, in the
// file of their message's hour, when Handle returns.
func TestArchiveConcurrentTasks(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir)
	h0 := time.Date(2026, 11, 28, 5, 59, 59, 0, time.UTC).UnixMilli()
	h1 := h0 + 1000 // the next hour
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 25 {
				seq := int64(g*25 + i + 1)
				ts := h0
				if seq%3 == 0 {
					ts = h1
				}
				if err := a.Handle(context.Background(), task("p:alice:bob", seq, ts)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// Everything acknowledged is on disk before Close.
	files := readLines(t, dir)
	seen := map[int64]string{}
	for name, lines := range files {
		for _, l := range lines {
			if prev, ok := seen[l.Seq]; ok {
				t.Fatalf("seq %d in %s and %s", l.Seq, prev, name)
			}
			seen[l.Seq] = name
			if l.Body != fmt.Sprintf("message \"%d\"\n", l.Seq) || l.From != "alice" || l.To != "bob" || l.Conv != "p:alice:bob" {
				t.Fatalf("line %+v", l)
			}
		}
	}
	if len(seen) != 500 {
		t.Fatalf("%d lines on disk, want 500", len(seen))
	}
	for seq, name := range seen {
		want := filepath.Join("2026", "11", "28", "05.jsonl")
		if seq%3 == 0 {
			want = filepath.Join("2026", "11", "28", "06.jsonl")
		}
		if name != want {
			t.Fatalf("seq %d in %s, want %s", seq, name, want)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil { // twice is harmless
		t.Fatal(err)
	}
}

func TestArchiveRefusesTaskWithoutMessage(t *testing.T) {
	a := openArchive(t, t.TempDir())
	if err := a.Handle(context.Background(), &events.TaskRecord{Kind: events.TaskKind_ARCHIVE}); !job.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
}

// A file that cannot be opened fails its task for a retry; other hours
// still work.
func TestArchiveOpenFailureIsRetried(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir)
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	if err := os.MkdirAll(a.Path(ts), 0o750); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	if err := a.Handle(context.Background(), task("p:a:b", 1, ts)); err == nil || job.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if err := a.Handle(context.Background(), task("p:a:b", 2, ts+time.Hour.Milliseconds())); err != nil {
		t.Fatal(err)
	}
}

// Lines buffered in a file that fails are reported lost to every task that
// wrote one (they are retried), and the next line goes to the file opened
// again.
func TestArchiveLinesOfAFailedFileAreRetried(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir)
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	n1, g1, err := a.write(a.Path(ts), []byte("{\"seq\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n2, g2, err := a.write(a.Path(ts), []byte("{\"seq\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, of := range a.files {
		_ = of.f.Close() // the file fails under the buffered lines
	}
	if err := a.sync(n1, g1); err == nil {
		t.Fatal("sync of a failed file succeeded")
	}
	if err := a.sync(n2, g2); !errors.Is(err, errLost) {
		t.Fatalf("second line: err = %v, want errLost", err)
	}
	if err := a.Handle(context.Background(), task("p:a:b", 3, ts)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir)[filepath.Join("2026", "01", "02", "03.jsonl")]
	if len(lines) != 1 || lines[0].Seq != 3 {
		t.Fatalf("file holds %+v, want only seq 3", lines)
	}
}

func TestNewWithoutDir(t *testing.T) {
	a, err := New("")
	if a != nil || err != nil {
		t.Fatalf("New(\"\") = %v, %v", a, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// A file left with a torn last line (the process died in the middle of
// writing it; its task was never answered) is cut back to its last complete
// line before anything is appended.
func TestArchiveCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	a, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }() // the last one opened below
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	path := a.Path(ts)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 10000) // the fragment spans several read chunks
	for _, tc := range []struct{ before, kept string }{
		{"{\"conv\":\"p:a:b\",\"seq\":1}\n{\"conv\":\"p:a:b\",\"se", "{\"conv\":\"p:a:b\",\"seq\":1}\n"},
		{"{\"conv\":\"p:a:b\",\"seq\":1}\n{\"body\":\"" + long, "{\"conv\":\"p:a:b\",\"seq\":1}\n"},
		{"{\"conv\":\"p:a:b\",\"se", ""},
		{"{\"conv\":\"p:a:b\",\"seq\":1}\n", "{\"conv\":\"p:a:b\",\"seq\":1}\n"},
	} {
		_ = a.Close()
		if a, err = New(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(tc.before), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := a.Handle(context.Background(), task("p:a:b", 2, ts)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(string(b), tc.kept)
		var l Line
		if !ok || json.Unmarshal([]byte(rest), &l) != nil || l.Seq != 2 || strings.Count(rest, "\n") != 1 {
			t.Fatalf("file %.80q became %.120q", tc.before, b)
		}
	}
}

// A file without new lines for the idle time is closed, so it may be
// shipped and deleted; a late line for its hour then starts a new file.
func TestArchiveClosesIdleFile(t *testing.T) {
	dir := t.TempDir()
	a := newArchiver(dir, 50*time.Millisecond)
	go a.closeIdle(10 * time.Millisecond)
	defer a.Close()
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	if err := a.Handle(context.Background(), task("p:a:b", 1, ts)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		open := len(a.files) > 0
		a.mu.Unlock()
		if !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle file still open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(a.Path(ts)); err != nil { // shipped
		t.Fatal(err)
	}
	if err := a.Handle(context.Background(), task("p:a:b", 2, ts)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir)[filepath.Join("2026", "01", "02", "03.jsonl")]
	if len(lines) != 1 || lines[0].Seq != 2 {
		t.Fatalf("new file holds %+v, want the late line only", lines)
	}
}

// Lines of several hours at once (a backlog crossing hours) keep their
// files open side by side, up to MaxOpen; a line for one more hour closes
// the file written least recently. Every line is on disk when its task is
// answered.
func TestArchiveSeveralHoursOpen(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir)
	h := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	seq := int64(0)
	for range 3 { // alternate between two hours: both stay open
		for _, ts := range []int64{h, h + hour} {
			seq++
			if err := a.Handle(context.Background(), task("p:a:b", seq, ts)); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.mu.Lock()
	open := len(a.files)
	a.mu.Unlock()
	if open != 2 {
		t.Fatalf("%d files open, want 2", open)
	}
	for i := range int64(MaxOpen + 2) { // more hours than MaxOpen
		seq++
		if err := a.Handle(context.Background(), task("p:a:b", seq, h+i*hour)); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	open = len(a.files)
	_, first := a.files[a.Path(h)]
	a.mu.Unlock()
	if open != MaxOpen || first {
		t.Fatalf("%d files open (want %d), first hour's open: %v", open, MaxOpen, first)
	}
	total := 0
	for _, lines := range readLines(t, dir) {
		total += len(lines)
	}
	if total != int(seq) {
		t.Fatalf("%d lines on disk, want %d", total, seq)
	}
}

// A file whose fsync fails fails the tasks of every line not yet known to
// be on disk, those of the other open files included (their fsync may come
// after the error was reported); a file with no new lines is not synced.
func TestArchiveSyncFailureFailsEveryPendingLine(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir)
	h := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	if err := a.Handle(context.Background(), task("p:a:b", 1, h+2*hour)); err != nil { // an open, clean file
		t.Fatal(err)
	}
	n1, g1, err := a.write(a.Path(h), []byte("{\"seq\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n2, g2, err := a.write(a.Path(h+hour), []byte("{\"seq\":3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	bad := a.files[a.Path(h)]
	clean := a.files[a.Path(h+2*hour)]
	if bad.w.Flush() != nil || clean.dirty {
		t.Fatal("setup")
	}
	// The descriptor goes away under the flushed file: its fsync fails
	// (EBADF) where a disk would report EIO.
	if err := syscall.Close(int(bad.f.Fd())); err != nil {
		t.Fatal(err)
	}
	a.mu.Unlock()
	if err := a.sync(n2, g2); err == nil || errors.Is(err, errLost) {
		t.Fatalf("round with a failing file: %v, want its error", err)
	}
	if err := a.sync(n1, g1); !errors.Is(err, errLost) {
		t.Fatalf("line in the failed file: %v, want errLost", err)
	}
	a.mu.Lock()
	_, badOpen := a.files[a.Path(h)]
	a.mu.Unlock()
	if badOpen {
		t.Fatal("failed file still open")
	}
	// Later lines go on.
	if err := a.Handle(context.Background(), task("p:a:b", 4, h)); err != nil {
		t.Fatal(err)
	}
}

// failRound makes the next sync round fail: the descriptor of the file
// holding line n goes away under it, so its fsync fails (EBADF) where a
// disk would report EIO. It returns that round's error.
func failRound(t *testing.T, a *Archiver, path string, n, gen uint64) error {
	t.Helper()
	a.mu.Lock()
	of := a.files[path]
	if of == nil || of.w.Flush() != nil {
		a.mu.Unlock()
		t.Fatal("setup")
	}
	if err := syscall.Close(int(of.f.Fd())); err != nil {
		a.mu.Unlock()
		t.Fatal(err)
	}
	a.mu.Unlock()
	return a.sync(n, gen)
}

// A line that a round made durable stays reported durable when another
// file fails before its own task asks: its task must not be retried (that
// would write the line twice).
func TestArchiveSyncedLineSurvivesLaterFailure(t *testing.T) {
	a := openArchive(t, t.TempDir())
	h := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	n1, g1, err := a.write(a.Path(h), []byte("{\"seq\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Another task's round syncs line 1 with its own.
	n2, g2, err := a.write(a.Path(h), []byte("{\"seq\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.sync(n2, g2); err != nil {
		t.Fatal(err)
	}
	// An unrelated file fails before line 1's task checks.
	n3, g3, err := a.write(a.Path(h+hour), []byte("{\"seq\":3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := failRound(t, a, a.Path(h+hour), n3, g3); err == nil {
		t.Fatal("round with a failing file succeeded")
	}
	if err := a.sync(n1, g1); err != nil {
		t.Fatalf("line synced before the failure: %v, want success", err)
	}
}

// A line lost with a failed file stays reported lost after later rounds
// succeed and sync lines numbered after it.
func TestArchiveLostLineStaysLost(t *testing.T) {
	a := openArchive(t, t.TempDir())
	h := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	n1, g1, err := a.write(a.Path(h), []byte("{\"seq\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n2, g2, err := a.write(a.Path(h+hour), []byte("{\"seq\":2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := failRound(t, a, a.Path(h), n2, g2); err == nil {
		t.Fatal("round with a failing file succeeded")
	}
	// A later line is synced by a good round before line 1's task checks.
	if err := a.Handle(context.Background(), task("p:a:b", 3, h+2*hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.sync(n1, g1); !errors.Is(err, errLost) {
		t.Fatalf("line in the failed file: %v, want errLost", err)
	}
	if err := a.sync(n2, g2); !errors.Is(err, errLost) {
		t.Fatalf("line not synced when the file failed: %v, want errLost", err)
	}
}

// BenchmarkArchive measures archived lines per second with 16 goroutines
// handling tasks at once (the task service's default -workers), every line
// fsynced before its Handle returns; group syncs make that affordable.
func BenchmarkArchive(b *testing.B) {
	a := openArchive(b, b.TempDir())
	ts := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Handle(context.Background(), task("p:a:b", seq.Add(1), ts)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
