package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// GroupCommit configures how concurrent appends to one database are combined
// into shared transactions.
type GroupCommit struct {
	// MaxItems stops a batch from growing once it holds this many rows or
	// more: messages, conversation-list rows and cursor updates (see
	// appendReq.size). Calls are taken whole, in queue order, so a batch
	// may exceed MaxItems by up to one call's rows less one, and a call
	// larger than MaxItems is a batch of its own; it is not a bound on the
	// rows of one transaction. 0 means DefaultGroupMaxItems, 1 turns
	// batching off (every call commits on its own).
	MaxItems int
	// MaxWait is how long a writer that has a batch smaller than MaxItems
	// waits for more calls before committing; 0 commits what is queued at
	// once (calls that arrive during a commit still share the next one).
	MaxWait time.Duration
	// Writers is the number of batches in flight per database. 0 means 1
	// for SQLite, which has one writer connection per file (more writers
	// would only queue for it). For MySQL it means 2 when there is a single
	// database (a second batch is built and sent while the first commits,
	// and the server works on both with two threads) and 1 when there are
	// several: they already commit in parallel, and one writer each makes
	// the largest batches, so the fewest commits. Batches of different
	// writers serialise only on the conversations they share.
	Writers int
	// TxTimeout bounds one transaction; 0 means DefaultTxTimeout.
	TxTimeout time.Duration
}

// Defaults of GroupCommit.
const (
	DefaultGroupMaxItems = 2000
	DefaultTxTimeout     = 10 * time.Second
	// MaxGroupWait bounds GroupCommit.MaxWait.
	MaxGroupWait = 10 * time.Millisecond
)

func (g GroupCommit) withDefaults(d dialect, dbs int) GroupCommit {
	if g.MaxItems == 0 {
		g.MaxItems = DefaultGroupMaxItems
	}
	if g.Writers == 0 {
		g.Writers = 1
		if d.name == "mysql" && dbs == 1 {
			g.Writers = 2
		}
	}
	if g.TxTimeout == 0 {
		g.TxTimeout = DefaultTxTimeout
	}
	return g
}

// errClosed is returned to calls made after Close.
var errClosed = errors.New("store: closed")

// appendReq is one call's share of the work in one database: its messages
// (valid, in call order) and the conversation-list rows to write with them,
// or cursors to raise (UpdateCursors, when the dialect has cursorsInCommit).
type appendReq struct {
	ctx     context.Context
	items   []AppendItem
	pos     []int // pos[k] is the index of items[k] in the caller's call
	index   []indexRow
	cursors []cursorRow
	now     int64

	// Filled by the committer before done is closed.
	res    []AppendResult
	remote []cursorRow                // senders' cursors to raise in other databases
	got    map[cursorKey]CursorUpdate // the cursors' values after the commit (shared by the batch)
	err    error
	done   chan struct{}
}

func (r *appendReq) size() int { return len(r.items) + len(r.index) + len(r.cursors) }

// committer runs the append transactions of one database. Calls queue up;
// each writer goroutine takes everything queued (whole calls, until the
// batch holds MaxItems rows or more; waiting at most MaxWait for more) and
// commits it in one transaction, so under load
// one commit (one fsync, one round trip per statement) serves many calls.
//
// Order: a batch keeps the queue's order, and a call's items keep their
// order within it, so the messages of one conversation get their seqs in the
// order the calls were queued. With several writers two batches may run at
// once; their transactions then serialise on the rows of the conversations
// they share, in the order they lock them, which is fine: only calls that
// overlap in time can be reordered, and such calls have no order.
//
// Results: a batch commits or fails as a whole. When it fails because of
// what it wrote (statementError), each of its calls is run again on its
// own, so one bad call cannot fail another; any other failure (the
// database is down, a deadline) fails every call of the batch.
type committer struct {
	db    *shardDB
	cfg   GroupCommit
	queue chan *appendReq

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newCommitter(db *shardDB, cfg GroupCommit) *committer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &committer{db: db, cfg: cfg, queue: make(chan *appendReq, 4*cfg.MaxItems), base: ctx, cancel: cancel}
	for range cfg.Writers {
		c.wg.Go(c.run)
	}
	return c
}

// submit queues r; wait for r.done afterwards.
func (c *committer) submit(r *appendReq) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errClosed
	}
	select {
	case c.queue <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// close stops accepting calls, fails the transactions in flight (their
// callers see an error; a retry is safe, see AppendMessages) and waits for
// the writers to finish what was queued.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.queue)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

func (c *committer) run() {
	batch := make([]*appendReq, 0, 64)
	for first := range c.queue {
		batch = c.collect(append(batch[:0], first))
		c.exec(batch)
		clear(batch)
	}
}

// collect adds queued calls to batch, each call whole, until it holds
// MaxItems rows or more (so the last call added may take it past MaxItems),
// the queue is empty and MaxWait has passed, or the queue is closed.
func (c *committer) collect(batch []*appendReq) []*appendReq {
	n := batch[0].size()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for n < c.cfg.MaxItems {
		var r *appendReq
		var ok bool
		select {
		case r, ok = <-c.queue:
		default:
			if c.cfg.MaxWait <= 0 {
				return batch
			}
			if timer == nil {
				timer = time.NewTimer(c.cfg.MaxWait)
			}
			select {
			case r, ok = <-c.queue:
			case <-timer.C:
				return batch
			}
		}
		if !ok {
			return batch
		}
		batch = append(batch, r)
		n += r.size()
	}
	return batch
}

// exec commits a batch and answers its calls.
func (c *committer) exec(batch []*appendReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err // its caller has gone: do not write for it
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := c.commit(live)
	if err != nil && len(live) > 1 && statementError(err) {
		c.db.stats.splits.Add(1)
		c.db.log.Debug("batch failed, committing its calls one by one", "db", c.db.name, "calls", len(live), "err", err)
		for _, r := range live {
			r.err = c.commit([]*appendReq{r})
		}
	} else {
		for _, r := range live {
			r.err = err
		}
	}
	for _, r := range live {
		close(r.done)
	}
}

// commit runs the transaction of reqs, again after a deadlock.
func (c *committer) commit(reqs []*appendReq) error {
	ctx, cancel := context.WithTimeout(c.base, c.cfg.TxTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := c.db.appendTx(ctx, reqs)
		if err == nil {
			c.db.stats.commits.Add(1)
			c.db.stats.batchedCalls.Add(uint64(len(reqs)))
			return nil
		}
		if !c.db.d.retryable(err) || attempt == maxAttempts {
			return err
		}
		c.db.stats.retries.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// maxAttempts bounds how often a transaction is run again after a deadlock.
const maxAttempts = 5
