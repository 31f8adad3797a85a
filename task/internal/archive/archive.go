// Package archive is the job that keeps a copy of every stored message
// outside the message store: append-only JSON Lines files, one per hour of
// message time, which operators ship to cold storage, a data warehouse or a
// compliance system with the tools they already have.
//
// Logic emits an ARCHIVE task for every message it pushes when it runs with
// -archive. This job appends each as one line to
// <dir>/<yyyy>/<mm>/<dd>/<hh>.jsonl (UTC hour of the message's creation) and
// answers the task only once the line is on disk (written and fsynced), so
// the consumer commits no offset for a line that a crash could lose. Lines
// are made durable in groups: one round of fsyncs (one per open file)
// covers every line written while the previous round ran.
//
// Up to MaxOpen files are open at once (a backlog being caught up, or the
// end of an hour, mixes lines of several hours); a file is closed after
// IdleClose without lines, so files not modified for a little longer may be
// shipped away. A torn last line (the process died while writing it) is
// cut off before a file is appended to again.
//
// Delivery is at least once, like everything downstream of Kafka: a task
// redone after a crash or a rebalance, or a message pushed again by logic
// (a retransmission), writes its line again. (conv, seq) identifies a
// message; readers of the archive deduplicate on it. A recall is archived
// as its own event message (content_type "gochat.recall", ref_seq naming
// the recalled seq); the line of the original message is not changed.
//
// An Archiver is safe for concurrent use.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gochat-im/gochat/idl/kitex_gen/events"
	"github.com/gochat-im/gochat/task/internal/job"
)

// Line is one archived message: the fields of the stored message, with
// the names of the client protocol's message (docs/PROTOCOL.md).
type Line struct {
	Conv        string `json:"conv"`
	Seq         int64  `json:"seq"`
	From        string `json:"from"`
	To          string `json:"to,omitempty"`
	ClientMsgID string `json:"cmid"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	TS          int64  `json:"ts"`
	Recalled    bool   `json:"recalled,omitempty"`
	RefSeq      int64  `json:"ref_seq,omitempty"`
}

// Archiver appends archive tasks to hourly files under a directory.
type Archiver struct {
	dir           string
	idle          time.Duration // IdleClose
	stop, stopped chan struct{} // closeIdle's
	closeOnce     sync.Once

	syncMu sync.Mutex // held by the goroutine making lines durable

	mu      sync.Mutex       // guards the fields below
	files   map[string]*file // the open files, by path
	written uint64           // lines written so far
	synced  uint64           // lines known to be on disk
	// gen changes whenever a file is dropped after an error: lines written
	// before that and not yet synced may be lost.
	gen uint64
	// syncedAtEnd[g] is the value of synced when gen moved on from g: a
	// line written in generation g is on disk if its number is at most
	// that, and lost otherwise. Only the last maxGenHistory generations
	// are kept; a line of an older one is reported lost (and written
	// again).
	syncedAtEnd map[uint64]uint64
}

// maxGenHistory bounds Archiver.syncedAtEnd.
const maxGenHistory = 64

// file is one open archive file.
type file struct {
	path string
	f    *os.File
	w    *bufio.Writer
	// last is when a line was last written to it; closeIdle closes it
	// after IdleClose without lines.
	last time.Time
	// dirty: lines were written since the last sync round took it.
	dirty bool
}

// MaxOpen bounds the files open at once; writing to another closes the one
// written least recently.
const MaxOpen = 8

// errLost fails the tasks whose lines were buffered in a file dropped after
// an error; they are retried.
var errLost = errors.New("archive: the file holding the line failed; retrying")

// IdleClose is how long a file stays open without a line written to it;
// it is closed (synced first) at most IdleClose/4 later. A file not
// modified for twice as long is closed: it may be shipped and deleted, and
// a late line for its hour starts a new one.
const IdleClose = time.Minute

// New returns an Archiver writing under dir, which it creates if needed.
// An empty dir gives nil: the caller then acknowledges archive tasks
// without writing them. Close stops it.
func New(dir string) (*Archiver, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := newArchiver(dir, IdleClose)
	go a.closeIdle(IdleClose / 4)
	return a, nil
}

func newArchiver(dir string, idle time.Duration) *Archiver {
	return &Archiver{dir: dir, idle: idle, stop: make(chan struct{}), stopped: make(chan struct{}),
		files: map[string]*file{}, syncedAtEnd: map[uint64]uint64{}}
}

// closeIdle closes each file once it has had no line for a.idle, checking
// every tick, until Close.
func (a *Archiver) closeIdle(tick time.Duration) {
	defer close(a.stopped)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.mu.Lock()
		for _, of := range a.files {
			if time.Since(of.last) > a.idle {
				_ = a.closeFile(of) // a failure drops the file and fails its lines' tasks
			}
		}
		a.mu.Unlock()
	}
}

// Path returns the file the message created at ts (Unix milliseconds)
// goes to.
func (a *Archiver) Path(ts int64) string {
	t := time.UnixMilli(ts).UTC()
	return filepath.Join(a.dir, t.Format("2006"), t.Format("01"), t.Format("02"), t.Format("15")+".jsonl")
}

// Handle archives one ARCHIVE task and returns once its line is durable.
// A task without a message is refused for good; a file system error is
// returned for a retry (the consumer backs off and tries again).
func (a *Archiver) Handle(_ context.Context, rec *events.TaskRecord) error {
	m := rec.Archive
	if m == nil {
		return job.Permanent(errors.New("archive task without a message"))
	}
	line, err := json.Marshal(Line{Conv: m.ConvId, Seq: m.Seq, From: m.Sender, To: m.Recipient,
		ClientMsgID: m.ClientMsgId, ContentType: m.ContentType, Body: m.Body, TS: m.CreatedAtMs,
		Recalled: m.Recalled, RefSeq: m.RefSeq})
	if err != nil {
		return job.Permanent(err)
	}
	n, gen, err := a.write(a.Path(m.CreatedAtMs), append(line, '\n'))
	if err != nil {
		return err
	}
	return a.sync(n, gen)
}

// write appends line to the file at path and returns the line's number and
// the generation it was written in.
func (a *Archiver) write(path string, line []byte) (n, gen uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	of := a.files[path]
	if of == nil {
		if len(a.files) >= MaxOpen {
			// Make room: the file written least recently is made
			// durable and closed.
			var oldest *file
			for _, o := range a.files {
				if oldest == nil || o.last.Before(oldest.last) {
					oldest = o
				}
			}
			if err := a.closeFile(oldest); err != nil {
				return 0, 0, err
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return 0, 0, fmt.Errorf("archive: %w", err)
		}
		f, err := a.openFile(path)
		if err != nil {
			return 0, 0, err
		}
		of = &file{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}
		a.files[path] = of
	}
	if _, err := of.w.Write(line); err != nil {
		a.abandon(of)
		return 0, 0, fmt.Errorf("archive: %w", err)
	}
	of.last, of.dirty = time.Now(), true
	a.written++
	return a.written, a.gen, nil
}

// openFile opens path for appending. A file that does not end with a
// newline holds the start of a line whose task was never acknowledged (the
// process died, or a write failed, in the middle of it): it is cut back to
// its last complete line, so the next line does not run into the fragment.
// The fragment's task is retried and writes its line again.
//
// Its directory entries (up to the archive's directory) are made durable,
// so that an acknowledged line is not lost with an entry that never
// reached the disk.
func (a *Archiver) openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if err := cutTornTail(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("archive: %s: %w", path, err)
	}
	// On every open, not only when the file is new: an earlier attempt
	// may have created it and failed before its directories were synced.
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("archive: %w", err)
		}
		if d == a.dir || d == filepath.Dir(d) {
			break
		}
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cutTornTail truncates f after its last newline if it does not end with
// one.
func cutTornTail(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	buf := make([]byte, 4096)
	end := st.Size()
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		if pos+n == end && buf[n-1] == '\n' {
			return nil // ends with a complete line
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return truncate(f, pos+int64(i)+1)
		}
	}
	return truncate(f, 0)
}

func truncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// durable tells whether line n, written in generation gen, is known to be
// on disk (a.mu held). ok is false while that is not settled yet: the line
// may still be synced by a round. A line synced before its generation
// ended is on disk, whatever failed afterwards; one not synced by then was
// in a file dropped after an error, or may have been, and is lost.
func (a *Archiver) durable(n, gen uint64) (onDisk, ok bool) {
	if a.gen == gen {
		return a.synced >= n, a.synced >= n
	}
	synced, known := a.syncedAtEnd[gen]
	return known && synced >= n, true
}

// sync returns once line n (written in generation gen) and every line
// before it are on disk. Whoever comes first flushes and fsyncs every open
// file for all the lines written so far; the others find theirs synced
// when their turn comes. A line buffered in a file dropped after an error
// before it was synced is reported lost, and its task retried.
func (a *Archiver) sync(n, gen uint64) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	a.mu.Lock()
	if onDisk, ok := a.durable(n, gen); ok {
		a.mu.Unlock()
		if !onDisk {
			return errLost
		}
		return nil
	}
	// Every line counted in upTo and not yet synced is in one of the
	// dirty files, or in a file closed before (closeFile synced it, or
	// failed and changed gen). A file is clean again once a round takes
	// it: if that round fails, gen changes and its lines are retried.
	upTo := a.written
	files := make([]*file, 0, len(a.files))
	for _, of := range a.files {
		if !of.dirty {
			continue
		}
		if err := of.w.Flush(); err != nil {
			a.abandon(of)
			a.mu.Unlock()
			return fmt.Errorf("archive: %w", err)
		}
		of.dirty = false
		files = append(files, of)
	}
	a.mu.Unlock()
	var failed *file
	var err error
	for _, of := range files {
		// A file closed meanwhile was synced by closeFile (or its failure
		// changed gen): Sync then reports it closed.
		if err = of.f.Sync(); errors.Is(err, os.ErrClosed) {
			err = nil
		}
		if err != nil {
			failed = of
			break
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		// The lines since the last good sync may be lost, whichever file
		// holds them now: Linux reports a writeback error once per open
		// file, so a later Sync of the same file (closeFile's) can succeed
		// although these pages never reached the disk.
		if a.files[failed.path] == failed {
			a.abandon(failed)
		} else {
			a.nextGen()
		}
		return fmt.Errorf("archive: %w", err)
	}
	if a.gen != gen {
		// A file was dropped during the round, perhaps one it synced
		// after the drop closed it: its lines are not known to be on
		// disk, so upTo is not either. This line was not synced when
		// its generation ended.
		return errLost
	}
	a.synced = upTo
	return nil
}

// nextGen starts a new generation after a file was dropped (a.mu held):
// the lines written so far and not synced may be lost.
func (a *Archiver) nextGen() {
	a.syncedAtEnd[a.gen] = a.synced
	delete(a.syncedAtEnd, a.gen-maxGenHistory)
	a.gen++
}

// closeFile flushes, syncs and closes of (a.mu held). On failure the file
// is dropped like after any error.
func (a *Archiver) closeFile(of *file) error {
	err := of.w.Flush()
	if err == nil {
		err = of.f.Sync()
	}
	if err != nil {
		a.abandon(of)
		return fmt.Errorf("archive: %w", err)
	}
	delete(a.files, of.path)
	return of.f.Close()
}

// abandon drops of after an error (a.mu held): what it held beyond its
// last sync is in an unknown state, so the tasks of lines not yet known to
// be on disk are retried (sync reports them lost) and the next line for
// its path opens the file again. A retried task may repeat a line that did
// reach the disk, which readers deduplicate like any other repeat.
func (a *Archiver) abandon(of *file) {
	_ = of.f.Close()
	delete(a.files, of.path)
	a.nextGen()
}

// Close makes everything written durable and closes the open files. No
// Handle may run during or after it.
func (a *Archiver) Close() error {
	if a == nil {
		return nil
	}
	a.closeOnce.Do(func() { close(a.stop) })
	<-a.stopped
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, of := range a.files {
		errs = append(errs, a.closeFile(of))
	}
	return errors.Join(errs...)
}
