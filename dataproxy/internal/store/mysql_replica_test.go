package store_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/tcpproxy"
	"github.com/gochat-im/gochat/pkg/ids"
)

// replicate copies every table of the primary database into the replica
// database, as replication would have by now.
func replicate(t *testing.T, primary, replica string, tables ...string) {
	t.Helper()
	root, err := sql.Open("mysql", mysqlServer)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	p, r := dbName(t, primary), dbName(t, replica)
	for _, tb := range tables {
		for _, q := range []string{"DELETE FROM `" + r + "`." + tb, "INSERT INTO `" + r + "`." + tb + " SELECT * FROM `" + p + "`." + tb} {
			if _, err := root.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
}

func dbName(t *testing.T, dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.DBName
}

// A replica is a second database that receives writes only when the test
// copies them: it lags by as much as the test wants. Syncs never miss an
// acknowledged message; they are served by the replica once it has caught
// up; lists and user lookups may be served by it, users it lacks are looked
// up on the primary; a replica that is down only sends reads to the
// primary.
func TestMySQLReplicaReads(t *testing.T) {
	primary, replica := testDatabase(t), testDatabase(t)
	// The replica gets the schema like any database (its own layout
	// record is never consulted).
	_ = openMySQL(t, replica).Close()
	proxy, err := tcpproxy.Start("127.0.0.1:3306")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	rcfg, _ := mysql.ParseDSN(replica)
	rcfg.Addr = proxy.Addr()
	s := openMySQLCfg(t, store.MySQLConfig{DSNs: []string{primary}, Replicas: [][]string{{rcfg.FormatDSN()}}})
	defer s.Close()
	ctx := context.Background()
	tables := []string{"users", "conversations", "user_conversations", "messages"}

	conv := ids.P2P("alice", "bob")
	send := func(cmids ...string) {
		t.Helper()
		var items []store.AppendItem
		for _, c := range cmids {
			items = append(items, store.AppendItem{ConvID: conv, Sender: "alice", Recipient: "bob", ClientMsgID: c, Body: c})
		}
		if _, err := s.AppendMessages(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	sync := func(after int64, limit int) store.SyncResult {
		t.Helper()
		res, err := s.SyncMessages(ctx, conv, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range res.Messages {
			if m.Seq != after+int64(i)+1 {
				t.Fatalf("sync after %d: message %d has seq %d", after, i, m.Seq)
			}
		}
		return res
	}
	stats := func() store.Stats { return s.Stats() }

	// Acked, not replicated: the sync still sees it, from the primary.
	send("1", "2", "3")
	before := stats()
	if r := sync(0, 0); len(r.Messages) != 3 || r.LastSeq != 3 {
		t.Fatalf("sync right after the ack: %+v", r)
	}
	if st := stats(); st.ReplicaMisses != before.ReplicaMisses+1 || st.ReplicaReads != before.ReplicaReads {
		t.Fatalf("a lagging replica answered: %+v", st)
	}

	// Replicated: the replica serves it.
	replicate(t, primary, replica, tables...)
	before = stats()
	if r := sync(0, 0); len(r.Messages) != 3 {
		t.Fatalf("sync from the replica: %+v", r)
	}
	if st := stats(); st.ReplicaReads != before.ReplicaReads+1 {
		t.Fatalf("the replica did not answer: %+v", st)
	}

	// Lagging again: the new messages come from the primary; a page the
	// replica holds entirely still comes from the replica.
	send("4", "5")
	before = stats()
	if r := sync(3, 0); len(r.Messages) != 2 || r.LastSeq != 5 {
		t.Fatalf("sync of the new messages: %+v", r)
	}
	if r := sync(0, 3); len(r.Messages) != 3 || !r.HasMore || r.LastSeq != 5 {
		t.Fatalf("sync of the old page: %+v", r)
	}
	if st := stats(); st.ReplicaMisses != before.ReplicaMisses+1 || st.ReplicaReads != before.ReplicaReads+1 {
		t.Fatalf("replica use: %+v, before %+v", st, before)
	}

	// A replica with a hole is not trusted.
	replicate(t, primary, replica, tables...)
	root, _ := sql.Open("mysql", mysqlServer)
	defer root.Close()
	if _, err := root.Exec("DELETE FROM `" + dbName(t, replica) + "`.messages WHERE seq = 2"); err != nil {
		t.Fatal(err)
	}
	if r := sync(0, 0); len(r.Messages) != 5 {
		t.Fatalf("sync over a replica with a hole: %+v", r)
	}

	// Lists may lag; users the replica lacks are found on the primary.
	if list, err := s.ListConversations(ctx, "bob", 0); err != nil || len(list) != 1 || list[0].LastSeq != 5 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if _, err := s.UpsertUsers(ctx, []store.User{{UID: "carol", Name: "Carol"}}); err != nil {
		t.Fatal(err)
	}
	if u, err := s.GetUsers(ctx, []string{"carol", "nobody"}); err != nil || len(u) != 1 || u[0].Name != "Carol" {
		t.Fatalf("a user not yet replicated: %+v %v", u, err)
	}

	// The replica goes down: reads go on, from the primary.
	proxy.Cut()
	send("6")
	if r := sync(0, 0); len(r.Messages) != 6 {
		t.Fatalf("sync with the replica down: %+v", r)
	}
	if list, err := s.ListConversations(ctx, "alice", 0); err != nil || len(list) != 1 || list[0].LastSeq != 6 {
		t.Fatalf("list with the replica down: %+v %v", list, err)
	}
	if u, err := s.GetUsers(ctx, []string{"carol"}); err != nil || len(u) != 1 {
		t.Fatalf("users with the replica down: %+v %v", u, err)
	}
	proxy.Restore()
	replicate(t, primary, replica, tables...)
	before = stats()
	if r := sync(0, 0); len(r.Messages) != 6 {
		t.Fatalf("sync after the replica returned: %+v", r)
	}
	if st := stats(); st.ReplicaReads != before.ReplicaReads+1 {
		t.Fatalf("the returned replica did not answer: %+v", st)
	}
}

// A recall changes an older row in the commit that adds its event. A
// replica that has not applied that commit must not serve the page with
// the recalled body, though it holds every seq of the page; a page no
// recall touched is still served by the lagging replica.
func TestMySQLLaggingReplicaNeverServesARecalledBody(t *testing.T) {
	primary, replica := testDatabase(t), testDatabase(t)
	_ = openMySQL(t, replica).Close()
	s := openMySQLCfg(t, store.MySQLConfig{DSNs: []string{primary}, Replicas: [][]string{{replica}}})
	defer s.Close()
	ctx := context.Background()
	conv := ids.P2P("alice", "bob")
	var items []store.AppendItem
	for _, c := range []string{"1", "2", "3", "4"} {
		items = append(items, store.AppendItem{ConvID: conv, Sender: "alice", Recipient: "bob", ClientMsgID: c, Body: "secret " + c})
	}
	if _, err := s.AppendMessages(ctx, items); err != nil {
		t.Fatal(err)
	}
	replicate(t, primary, replica, "users", "conversations", "user_conversations", "messages")
	res, err := s.AppendMessages(ctx, []store.AppendItem{{ConvID: conv, Sender: "alice", Recipient: "bob", ClientMsgID: "r", RecallSeq: 2, RecallWindowMs: 1 << 40}})
	if err != nil || res[0].ErrorCode != 0 {
		t.Fatalf("recall: %+v %v", res, err)
	}
	before := s.Stats()
	r, err := s.SyncMessages(ctx, conv, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 2 || !r.Messages[1].Recalled || r.Messages[1].Body != "" {
		t.Fatalf("page after an acked recall: %+v", r.Messages)
	}
	if st := s.Stats(); st.ReplicaReads != before.ReplicaReads || st.ReplicaMisses != before.ReplicaMisses+1 {
		t.Fatalf("the lagging replica answered: %+v, before %+v", st, before)
	}
	// Seqs 3-4: no recall since the replica's state names them.
	before = s.Stats()
	if r, err = s.SyncMessages(ctx, conv, 2, 2); err != nil || len(r.Messages) != 2 || r.Messages[0].Body != "secret 3" {
		t.Fatalf("page 3-4: %+v %v", r, err)
	}
	if st := s.Stats(); st.ReplicaReads != before.ReplicaReads+1 {
		t.Fatalf("a page no recall touched was not served by the replica: %+v", st)
	}
}
