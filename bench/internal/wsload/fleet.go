//go:build linux

package wsload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fleet is the parent's view of its worker processes. Each worker is this
// same executable started again with WorkerEnv set; it gets its Plan on
// stdin and reports on stdout. Closing a worker's stdin stops it, so
// workers never outlive the parent.
//
// Concurrency: Totals, Reports and the command methods are safe for
// concurrent use.
type Fleet struct {
	procs []*workerProc
	seq   int64
	mu    sync.Mutex
}

type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	last  Report
	exit  chan struct{}
	err   error
}

// StartFleet starts one worker per plan.
func StartFleet(plans []Plan) (*Fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f := &Fleet{}
	for _, p := range plans {
		w, err := startWorker(exe, p)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.procs = append(f.procs, w)
	}
	return f, nil
}

func startWorker(exe string, p Plan) (*workerProc, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &workerProc{cmd: cmd, stdin: in, exit: make(chan struct{})}
	w.last.Worker = p.Worker
	b, _ := json.Marshal(p)
	if _, err := in.Write(append(b, '\n')); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("send plan: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r Report
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				w.mu.Lock()
				w.last = r
				w.mu.Unlock()
			}
		}
		w.err = cmd.Wait()
		close(w.exit)
	}()
	return w, nil
}

// PIDs returns the worker process ids.
func (f *Fleet) PIDs() []int {
	var out []int
	for _, w := range f.procs {
		out = append(out, w.cmd.Process.Pid)
	}
	return out
}

// Reports returns each worker's latest report.
func (f *Fleet) Reports() []Report {
	out := make([]Report, len(f.procs))
	for i, w := range f.procs {
		w.mu.Lock()
		out[i] = w.last
		w.mu.Unlock()
	}
	return out
}

// Exited returns an error if a worker has exited.
func (f *Fleet) Exited() error {
	for i, w := range f.procs {
		select {
		case <-w.exit:
			return fmt.Errorf("worker %d exited: %v", i, w.err)
		default:
		}
	}
	return nil
}

// Totals sums the latest reports. Done is true when every worker is done.
func (f *Fleet) Totals() Total {
	return Sum(f.Reports())
}

func (f *Fleet) send(c command) error {
	b, _ := json.Marshal(c)
	b = append(b, '\n')
	var errs []error
	for _, w := range f.procs {
		if _, err := w.stdin.Write(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *Fleet) nextSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return f.seq
}

// waitAll polls until ok holds for every worker's report.
func (f *Fleet) waitAll(ctx context.Context, ok func(Report) bool) error {
	for {
		all := true
		for _, r := range f.Reports() {
			if !ok(r) {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if err := f.Exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Mark starts a push measurement: every worker resets its push counters
// and measures arrivals from at (unix nanos). It returns once every worker
// has acknowledged, so frames produced after Mark returns are all counted.
// If quiet is positive, workers send no keepalives for that long or until
// Resume.
func (f *Fleet) Mark(ctx context.Context, at int64, quiet time.Duration) error {
	seq := f.nextSeq()
	c := command{Cmd: "mark", Seq: seq, NS: at}
	if quiet > 0 {
		c.Until = time.Now().Add(quiet).UnixNano()
	}
	if err := f.send(c); err != nil {
		return err
	}
	return f.waitAll(ctx, func(r Report) bool { return r.Mark == seq })
}

// Resume lets workers send keepalives again after a quiet Mark.
func (f *Fleet) Resume() error {
	return f.send(command{Cmd: "resume"})
}

// Target is one open connection as the gateway knows it.
type Target struct {
	Gateway int // index into the gateway list
	UID     string
	ConnID  int64
}

// Targets asks every worker for its open connections.
func (f *Fleet) Targets(ctx context.Context, dir string) ([]Target, error) {
	seq := f.nextSeq()
	for i, w := range f.procs {
		b, _ := json.Marshal(command{Cmd: "targets", Seq: seq, Path: filepath.Join(dir, "targets-"+strconv.Itoa(i))})
		if _, err := w.stdin.Write(append(b, '\n')); err != nil {
			return nil, err
		}
	}
	if err := f.waitAll(ctx, func(r Report) bool { return r.Targets == seq }); err != nil {
		return nil, err
	}
	var out []Target
	for i := range f.procs {
		path := filepath.Join(dir, "targets-"+strconv.Itoa(i))
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		_ = os.Remove(path)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fs := strings.Fields(line)
			if len(fs) != 3 {
				continue
			}
			gw, _ := strconv.Atoi(fs[0])
			id, _ := strconv.ParseInt(fs[2], 10, 64)
			out = append(out, Target{Gateway: gw, UID: fs[1], ConnID: id})
		}
	}
	return out, nil
}

// Stop closes every worker's stdin and waits up to 30 s for them to exit
// (closing their connections), then kills the ones left.
func (f *Fleet) Stop() {
	for _, w := range f.procs {
		_ = w.stdin.Close()
	}
	deadline := time.After(30 * time.Second)
	for _, w := range f.procs {
		select {
		case <-w.exit:
		case <-deadline:
			_ = w.cmd.Process.Kill()
			<-w.exit
		}
	}
}

// Total is the sum of the workers' reports.
type Total struct {
	Report
	Workers int
	Done    bool
	Setup   *Histogram
	Push    *Histogram
}

// Sum adds reports up.
func Sum(rs []Report) Total {
	t := Total{Workers: len(rs), Done: len(rs) > 0, Setup: NewHistogram(), Push: NewHistogram()}
	for _, r := range rs {
		t.Dialled += r.Dialled
		t.Connected += r.Connected
		t.Open += r.Open
		t.Closed += r.Closed
		t.DialErrors += r.DialErrors
		t.SetupErrors += r.SetupErrors
		t.Frames += r.Frames
		for i, n := range r.OpenByGW {
			for len(t.OpenByGW) <= i {
				t.OpenByGW = append(t.OpenByGW, 0)
			}
			t.OpenByGW[i] += n
		}
		t.MarkFrames += r.MarkFrames
		if r.FirstNS != 0 && (t.FirstNS == 0 || r.FirstNS < t.FirstNS) {
			t.FirstNS = r.FirstNS
		}
		t.LastNS = max(t.LastNS, r.LastNS)
		t.LastOpenNS = max(t.LastOpenNS, r.LastOpenNS)
		if r.StartNS != 0 && (t.StartNS == 0 || r.StartNS < t.StartNS) {
			t.StartNS = r.StartNS
		}
		t.Done = t.Done && r.Done
		for k, v := range r.Errors {
			if t.Errors == nil {
				t.Errors = make(map[string]int64)
			}
			t.Errors[k] += v
		}
		t.Setup.Merge(FromSparse(r.Setup))
		t.Push.Merge(FromSparse(r.Push))
	}
	return t
}
