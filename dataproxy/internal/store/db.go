package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// shardDB is one database of the store: its connection pools, the SQL of
// its tables and its group committer.
type shardDB struct {
	index  int
	name   string // for logs and errors: a file path or host/database
	layout Layout
	d      dialect
	log    *slog.Logger
	stats  *counters

	w *sql.DB // writes (SQLite: one connection; MySQL: the primary's pool)
	r *sql.DB // reads that must see the latest commit (SQLite: query-only pool; MySQL: == w)
	// replicas serve reads that may lag (see SQLStore.SyncMessages); they
	// are used in turn.
	replicas []*sql.DB
	next     atomic.Uint32

	t []tableSQL
	// maxStmtBytes bounds the estimated size of one multi-row statement,
	// below the server's packet limit.
	maxStmtBytes int
	// prepared holds statements prepared on r, filled by prepare and only
	// read afterwards.
	prepared map[string]*sql.Stmt
	// writes, when the dialect has prepareWrites, holds the multi-row
	// statements of the append transaction prepared on w for every power of
	// two rows (or keys) up to maxPreparedRows, by their text; execRows
	// and queryEach then cut their statements to those sizes. Filled by
	// prepare and only read afterwards; nil: statements are sent as text.
	writes map[string]*sql.Stmt

	gc *committer
	// ckpt checkpoints the WAL of a SQLite file in the background (nil
	// for MySQL, a read-only store, or with checkpoints left to SQLite).
	ckpt *checkpointer

	// testFail, when set by a test, runs at the start of every append
	// transaction; an error it returns fails the transaction.
	testFail func(reqs []*appendReq) error
	// testUnprepared, when set by a test, is called with each statement of
	// the append path that had to be sent as text (not prepared).
	testUnprepared func(text string)
}

// tableSQL is the SQL naming one of the database's tables (table number t
// of each kind: messages, conversations, user_conversations, chat_groups,
// group_members).
type tableSQL struct {
	msgs, convs, uconvs, groups, members string // table names
	lastSeq                              string
	sync                                 string
	recallsIn                            string
	listIndex                            string
	getMsg                               string

	// The statements of the append transaction.
	insIndex, insConv, insMsg, saveConv        rowSQL
	lockConv, findMsg                          keySQL
	groupState, memberCheck, recallTarget      keySQL
	markRecalled                               string
	setCursors                                 rowSQL
	getCursors, lastSeqs, userGroups, listMany keySQL
}

// rowSQL is a statement of one or more rows: head, tuples separated by sep
// (", " when empty), tail.
type rowSQL struct{ head, tuple, sep, tail string }

// keySQL is a SELECT by key: head, a condition on k keys (join(k)), tail.
type keySQL struct {
	head, tail string
	join       func(k int) string
}

func newTableSQL(l Layout, d dialect, t int) tableSQL {
	sfx := l.tableSuffix(t)
	ts := tableSQL{msgs: tblMsgs + sfx, convs: tblConvs + sfx, uconvs: tblUconvs + sfx,
		groups: tblGroups + sfx, members: tblMembers + sfx}
	ts.insIndex = rowSQL{head: "INSERT INTO " + ts.uconvs + " (uid, conv_id, kind, peer, created_at_ms) VALUES ", tuple: "(?, ?, ?, ?, ?)", tail: d.keepTail("uid")}
	ts.insConv = rowSQL{head: "INSERT INTO " + ts.convs + " (conv_id, kind, last_seq, created_at_ms, updated_at_ms) VALUES ", tuple: "(?, ?, 0, ?, 0)",
		tail: d.keepTail("conv_id")}
	insMsg := "INSERT INTO "
	if d.conflictRollsBack {
		insMsg = "INSERT OR ROLLBACK INTO "
	}
	ts.insMsg = rowSQL{head: insMsg + ts.msgs + " (conv_id, seq, sender, recipient, client_msg_id, content_type, body, created_at_ms, recalled, ref_seq) VALUES ",
		tuple: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"}
	ts.saveConv = d.saveSeqs(ts.convs)
	ts.lockConv = keySQL{"SELECT conv_id, last_seq, updated_at_ms FROM " + ts.convs + " WHERE ", d.lockSuffix, inList("conv_id")}
	ts.findMsg = keySQL{"SELECT conv_id, sender, client_msg_id, seq, created_at_ms, ref_seq FROM " + ts.msgs + " WHERE ", "",
		orTerms("(conv_id = ? AND sender = ? AND client_msg_id = ?)")}
	ts.groupState = keySQL{"SELECT group_id, dissolved_at_ms FROM " + ts.groups + " WHERE ", "", inList("group_id")}
	ts.memberCheck = keySQL{"SELECT group_id, uid FROM " + ts.members + " WHERE ", "", orTerms("(group_id = ? AND uid = ?)")}
	ts.recallTarget = keySQL{"SELECT conv_id, seq, sender, created_at_ms, recalled, ref_seq FROM " + ts.msgs + " WHERE ", "",
		orTerms("(conv_id = ? AND seq = ?)")}
	ts.markRecalled = "UPDATE " + ts.msgs + " SET recalled = 1, body = '' WHERE conv_id = ? AND seq = ?"
	ts.setCursors = d.setCursors(ts.uconvs)
	ts.getCursors = keySQL{"SELECT uid, conv_id, delivered_seq, read_seq FROM " + ts.uconvs + " WHERE ", "", orTerms("(uid = ? AND conv_id = ?)")}
	ts.lastSeqs = keySQL{"SELECT conv_id, last_seq, updated_at_ms FROM " + ts.convs + " WHERE ", "", inList("conv_id")}
	// The groups of (group, uid) pairs whose member the user is, with what
	// a list or a group answer shows.
	ts.userGroups = keySQL{"SELECT m.uid, g.group_id, g.name, g.owner, g.created_at_ms, g.dissolved_at_ms, g.member_count FROM " + ts.groups +
		" g JOIN " + ts.members + " m ON m.group_id = g.group_id WHERE ", "", orTerms("(m.group_id = ? AND m.uid = ?)")}
	ts.listMany = keySQL{"SELECT uid, conv_id, kind FROM " + ts.uconvs + " WHERE ", "", inList("uid")}
	ts.lastSeq = "SELECT last_seq FROM " + ts.convs + " WHERE conv_id = ?"
	// Recalls stored after a seq that recall a message in a range: a range
	// read of the primary key, as long as the messages after that seq.
	ts.recallsIn = "SELECT COUNT(*) FROM " + ts.msgs + " WHERE conv_id = ? AND seq > ? AND ref_seq BETWEEN ? AND ?"
	ts.sync = "SELECT seq, sender, recipient, client_msg_id, content_type, body, created_at_ms, recalled, ref_seq FROM " + ts.msgs +
		" WHERE conv_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
	ts.getMsg = "SELECT seq, recipient, content_type, body, created_at_ms, recalled, ref_seq FROM " + ts.msgs +
		" WHERE conv_id = ? AND sender = ? AND client_msg_id = ?"
	ts.listIndex = "SELECT conv_id, kind, peer, delivered_seq, read_seq FROM " + ts.uconvs + " WHERE uid = ?"
	return ts
}

// listJoin is ListConversations in a layout of one table in one database,
// where the list, the conversations and the groups can be joined. A
// one-to-one conversation is listed once it has a message, a group as soon
// as the user is a member (and after it is dissolved).
const listJoin = "SELECT uc.conv_id, uc.kind, uc.peer, c.last_seq, c.updated_at_ms, uc.delivered_seq, uc.read_seq, COALESCE(g.name, '')" +
	" FROM user_conversations uc JOIN conversations c ON c.conv_id = uc.conv_id" +
	" LEFT JOIN group_members m ON uc.kind = 'group' AND m.group_id = SUBSTR(uc.conv_id, 3) AND m.uid = uc.uid" +
	" LEFT JOIN chat_groups g ON g.group_id = m.group_id" +
	" WHERE uc.uid = ? AND ((uc.kind = 'p2p' AND c.last_seq > 0) OR m.uid IS NOT NULL)" +
	" ORDER BY c.updated_at_ms DESC, uc.conv_id ASC LIMIT ?"

func newShardDB(index int, name string, l Layout, d dialect, w, r *sql.DB, log *slog.Logger, stats *counters) *shardDB {
	db := &shardDB{index: index, name: name, layout: l, d: d, w: w, r: r, log: log, stats: stats, maxStmtBytes: 4 << 20}
	for t := range l.Tables {
		db.t = append(db.t, newTableSQL(l, d, t))
	}
	return db
}

// prepare prepares the hot read statements on r. It needs the schema, so
// it runs after migrate; until then queries go unprepared.
func (d *shardDB) prepare(ctx context.Context, single bool) error {
	qs := make([]string, 0, 4*len(d.t)+1)
	for _, t := range d.t {
		qs = append(qs, t.lastSeq, t.sync, t.listIndex, t.getMsg)
	}
	if single {
		qs = append(qs, listJoin)
	}
	p, err := prepareAll(ctx, d.r, qs)
	if err != nil {
		return fmt.Errorf("prepare on %s: %w", d.name, err)
	}
	d.prepared = p
	if !d.d.prepareWrites {
		return nil
	}
	var ws []string
	for _, t := range d.t {
		for n := 1; n <= maxPreparedRows; n *= 2 {
			for _, q := range []rowSQL{t.insIndex, t.insConv, t.insMsg, t.saveConv, t.setCursors} {
				ws = append(ws, values(q, n))
			}
			for _, q := range []keySQL{t.lockConv, t.findMsg, t.groupState, t.memberCheck, t.recallTarget, t.getCursors} {
				ws = append(ws, q.head+q.join(n)+q.tail)
			}
		}
	}
	if d.writes, err = prepareAll(ctx, d.w, ws); err != nil {
		return fmt.Errorf("prepare writes on %s: %w", d.name, err)
	}
	return nil
}

// prepareAll prepares qs on db (each text once).
func prepareAll(ctx context.Context, db *sql.DB, qs []string) (map[string]*sql.Stmt, error) {
	p := make(map[string]*sql.Stmt, len(qs))
	for _, q := range qs {
		if p[q] != nil {
			continue
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range p {
				_ = st.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		p[q] = st
	}
	return p, nil
}

// queryRow runs query on db, through its prepared statement when db is the
// primary read pool.
func (d *shardDB) queryRow(ctx context.Context, db *sql.DB, query string, args ...any) *sql.Row {
	if p := d.prepared[query]; p != nil && db == d.r {
		return p.QueryRowContext(ctx, args...)
	}
	return db.QueryRowContext(ctx, query, args...)
}

func (d *shardDB) query(ctx context.Context, db *sql.DB, query string, args ...any) (*sql.Rows, error) {
	if p := d.prepared[query]; p != nil && db == d.r {
		return p.QueryContext(ctx, args...)
	}
	return db.QueryContext(ctx, query, args...)
}

// replica returns the next replica, or nil when the database has none.
func (d *shardDB) replica() *sql.DB {
	n := len(d.replicas)
	if n == 0 {
		return nil
	}
	return d.replicas[int(d.next.Add(1)-1)%n]
}

// close stops the committer and closes the pools.
func (d *shardDB) close() error {
	if d.gc != nil {
		d.gc.close()
	}
	var err error
	if d.ckpt != nil {
		err = d.ckpt.close()
	}
	for _, st := range d.prepared {
		_ = st.Close()
	}
	for _, st := range d.writes {
		_ = st.Close()
	}

	err = errors.Join(err, d.w.Close())
	if d.r != d.w {
		err = errors.Join(err, d.r.Close())
	}
	for _, r := range d.replicas {
		err = errors.Join(err, r.Close())
	}
	return err
}
