//go:build linux

package wsload

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/gochat-im/gochat/pkg/auth"
)

// WorkerEnv marks a process started by a Fleet as one of its workers.
const WorkerEnv = "GOCHAT_WSLOAD_WORKER"

// IsWorker reports whether this process is a Fleet worker; main calls
// RunWorker first thing if it is.
func IsWorker() bool { return os.Getenv(WorkerEnv) == "1" }

// Plan is one worker's share of the load.
type Plan struct {
	Worker   int
	Gateways []Gateway
	Sources  []string
	// Users First .. First+Count-1 connect; user i goes to gateway
	// i mod len(Gateways).
	First, Count int
	UIDPrefix    string
	Device       string
	Secret       string
	TokenTTL     time.Duration
	// Concurrency bounds connections dialled but not yet open; Rate bounds
	// new connections per second (0: no limit).
	Concurrency int
	Rate        float64
	// Keepalive is how often each connection sends a heartbeat (0: never).
	Keepalive time.Duration
	// ReadEvery, once every connection is open, is the least time between
	// two polls that found work: the worker sleeps instead of waking for
	// every frame, so it costs the shared CPUs a read per frame and not a
	// wake-up per frame too. Arrival times are the kernel's receive
	// timestamps, so they do not move. 0: poll again at once.
	ReadEvery time.Duration
	// MaxProcs sets the worker's GOMAXPROCS (0: Go's default). The worker
	// runs one busy goroutine.
	MaxProcs int
	// Report is the interval of progress reports.
	Report time.Duration

	secret []byte
}

// UID is the user id of user i.
func (p *Plan) UID(i int) string { return p.UIDPrefix + strconv.Itoa(i) }

func (p *Plan) token(i int) (string, error) {
	return auth.Sign(p.secret, auth.Claims{UID: p.UID(i), Device: p.Device, Expires: time.Now().Add(p.TokenTTL)})
}

// Report is a worker's running totals, sent as one JSON line per interval.
type Report struct {
	Worker      int
	Dialled     int64 // connections started
	Connected   int64 // connections that reached hello
	Open        int64 // connected and not closed
	Closed      int64 // open connections closed by the server
	DialErrors  int64 // socket/bind/connect refused at once
	SetupErrors int64 // failed between dial and hello
	Frames      int64 // text frames after hello
	// OpenByGW is Open per gateway (index into Plan.Gateways).
	OpenByGW []int64
	// Done: every connection of the plan was tried and none is pending.
	Done bool
	// StartNS is when the worker dialled its first connection, LastOpenNS
	// when its latest connection opened (unix nanos).
	StartNS, LastOpenNS int64
	// Mark is the last mark command seen; MarkNS its start time; frames
	// since then are MarkFrames, the first and last arriving at FirstNS and
	// LastNS (unix nanos).
	Mark, MarkNS, MarkFrames, FirstNS, LastNS int64
	// Targets is the sequence number of the last targets command done.
	Targets int64
	// Errors counts failures by reason (at most 32 reasons).
	Errors map[string]int64 `json:",omitempty"`
	Setup  Sparse           // dial -> hello
	Push   Sparse           // mark -> frame arrival
}

func (r *Report) note(why string) {
	if r.Errors == nil {
		r.Errors = make(map[string]int64)
	}
	if _, ok := r.Errors[why]; !ok && len(r.Errors) >= 32 {
		why = "other"
	}
	r.Errors[why]++
}

// command is what the parent sends a worker, one JSON line each.
type command struct {
	Cmd  string // "mark", "resume", "targets"
	Seq  int64
	NS   int64
	Path string
	// Until (mark): no keepalives until this time (unix nanos), or until
	// "resume".
	Until int64 `json:",omitempty"`
}

// RunWorker runs one worker: it reads its Plan and then commands from in,
// writes reports to out, and returns when in is closed (the parent
// stopped or died), closing every connection.
func RunWorker(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(line, &p); err != nil {
		return fmt.Errorf("decode plan: %w", err)
	}
	p.secret = []byte(p.Secret)
	if len(p.Gateways) == 0 || len(p.Sources) == 0 || p.Concurrency <= 0 {
		return errors.New("plan without gateways, sources or concurrency")
	}
	if p.Report <= 0 {
		p.Report = 500 * time.Millisecond
	}
	if p.MaxProcs > 0 {
		runtime.GOMAXPROCS(p.MaxProcs)
	}
	l, err := newLoop(&p)
	if err != nil {
		return err
	}
	defer l.close()

	cmds := make(chan command, 16)
	go func() {
		defer close(cmds)
		for {
			b, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			var c command
			if json.Unmarshal(b, &c) == nil {
				cmds <- c
			}
		}
	}()
	enc := json.NewEncoder(out)
	var (
		last     = time.Now()
		reported time.Time
		credit   float64
	)
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			l.mu.Lock()
			l.command(c)
			r := l.report()
			l.mu.Unlock()
			_ = enc.Encode(r)
			continue
		default:
		}
		now := time.Now()
		budget := p.Concurrency
		if p.Rate > 0 {
			credit = min(credit+p.Rate*now.Sub(last).Seconds(), float64(p.Concurrency))
			budget = int(credit)
		}
		last = now
		l.mu.Lock()
		if n := l.dialMore(budget); p.Rate > 0 {
			credit -= float64(n)
		}
		l.mu.Unlock()
		// Poll briefly while connections are being set up, then relax:
		// tens of idle workers waking every 5 ms cost the box real CPU.
		wait := 50
		if l.next < p.Count || l.pending > 0 {
			wait = 5
		}
		ready := l.poll(wait)
		if p.ReadEvery > 0 && ready > 0 && ready < len(l.evs) && l.next >= p.Count && l.pending == 0 {
			time.Sleep(p.ReadEvery)
		}
		now = time.Now()
		l.mu.Lock()
		l.keepalive(now)
		var r *Report
		if now.Sub(reported) >= p.Report {
			reported = now
			rep := l.report()
			r = &rep
		}
		l.mu.Unlock()
		if r != nil {
			if err := enc.Encode(r); err != nil {
				return nil // parent gone
			}
		}
	}
}

func (l *loop) command(c command) {
	switch c.Cmd {
	case "mark":
		l.stats.Mark, l.stats.MarkNS = c.Seq, c.NS
		l.stats.MarkFrames, l.stats.FirstNS, l.stats.LastNS = 0, 0, 0
		l.hist.Reset()
		l.quietUntil = c.Until
	case "resume":
		l.quietUntil = 0
	case "targets":
		if err := l.writeTargets(c.Path); err != nil {
			l.stats.note("targets: " + err.Error())
		}
		l.stats.Targets = c.Seq
	}
}

func (l *loop) report() Report {
	r := l.stats
	r.OpenByGW = append([]int64(nil), l.stats.OpenByGW...)
	r.Done = l.next >= l.plan.Count && l.pending == 0
	r.Setup = l.setup.Sparse()
	r.Push = l.hist.Sparse()
	if len(l.stats.Errors) > 0 {
		r.Errors = make(map[string]int64, len(l.stats.Errors))
		for k, v := range l.stats.Errors {
			r.Errors[k] = v
		}
	}
	return r
}

// writeTargets writes "gateway-index uid conn-id" for each open
// connection.
func (l *loop) writeTargets(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, c := range l.open {
		if c.state == stOpen {
			fmt.Fprintf(w, "%d %s %d\n", c.gw, l.plan.UID(int(c.user)), c.id)
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
