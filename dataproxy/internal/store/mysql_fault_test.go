package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/dataproxy/internal/tcpproxy"
	"github.com/gochat-im/gochat/pkg/ids"
)

// outcome is what one append call returned.
type outcome struct {
	items []store.AppendItem
	res   []store.AppendResult
	err   error
}

// MariaDB becomes unreachable in the middle of appends (every connection
// closed, new ones refused) and comes back. Calls fail with errors while it
// is away, nothing panics, the store recovers by itself, and no call is
// half-stored: a failed call stored either nothing or, when the cut came
// during its commit, all of it, and a retry with the same client message ids
// returns what was stored without storing anything twice.
func TestMySQLOutage(t *testing.T) {
	dsn := testDatabase(t)
	proxy, err := tcpproxy.Start("127.0.0.1:3306")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg, _ := mysql.ParseDSN(dsn)
	cfg.Addr = proxy.Addr()
	cfg.Timeout = time.Second
	// Two databases of two tables, both through the proxy: an outage of the
	// server takes every shard down at once.
	other := testDatabase(t)
	cfg2, _ := mysql.ParseDSN(other)
	cfg2.Addr, cfg2.Timeout = proxy.Addr(), time.Second
	s := openMySQLCfg(t, store.MySQLConfig{DSNs: []string{cfg.FormatDSN(), cfg2.FormatDSN()}, Options: store.Options{
		Tables: 2, GroupCommit: store.GroupCommit{TxTimeout: 2 * time.Second},
	}})
	defer s.Close()

	const writers = 6
	var (
		mu       sync.Mutex
		outcomes []outcome
		okCount  atomic.Int64
		failures atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				// Each call writes to two conversations of this writer.
				var items []store.AppendItem
				for _, peer := range []string{fmt.Sprint("x", w), fmt.Sprint("y", w)} {
					items = append(items, store.AppendItem{ConvID: ids.P2P("alice", peer), Sender: "alice", Recipient: peer,
						ClientMsgID: fmt.Sprint("m", n), Body: fmt.Sprint(n)})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				res, err := s.AppendMessages(ctx, items)
				cancel()
				mu.Lock()
				outcomes = append(outcomes, outcome{items, res, err})
				mu.Unlock()
				if err != nil {
					failures.Add(1)
					time.Sleep(5 * time.Millisecond)
				} else {
					okCount.Add(1)
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("appends before the outage", func() bool { return okCount.Load() >= 100 })
	proxy.Cut()
	f0 := failures.Load()
	waitFor("failures during the outage", func() bool { return failures.Load() >= f0+3*writers })
	// Reads fail too, with an error.
	if _, err := s.SyncMessages(context.Background(), ids.P2P("alice", "x0"), 0, 0); err == nil {
		t.Fatal("sync succeeded during the outage")
	}
	okDuring := okCount.Load()
	proxy.Restore()
	waitFor("appends after the outage", func() bool { return okCount.Load() >= okDuring+100 })
	close(stop)
	wg.Wait()
	t.Logf("%d calls succeeded, %d failed", okCount.Load(), failures.Load())

	ctx := context.Background()
	// Every acked message is stored with its seq.
	stored := map[string]map[string]int64{} // conv -> cmid -> seq
	for w := range writers {
		for _, peer := range []string{fmt.Sprint("x", w), fmt.Sprint("y", w)} {
			conv := ids.P2P("alice", peer)
			stored[conv] = map[string]int64{}
			after := int64(0)
			for {
				page, err := s.SyncMessages(ctx, conv, after, store.MaxSyncLimit)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range page.Messages {
					if m.Seq != after+1 {
						t.Fatalf("%s: seq %d after %d", conv, m.Seq, after)
					}
					if _, dup := stored[conv][m.ClientMsgID]; dup {
						t.Fatalf("%s: %s stored twice", conv, m.ClientMsgID)
					}
					stored[conv][m.ClientMsgID] = m.Seq
					after = m.Seq
				}
				if !page.HasMore {
					break
				}
			}
		}
	}
	ambiguous := 0
	for _, o := range outcomes {
		if o.err == nil {
			for i, it := range o.items {
				if seq, ok := stored[it.ConvID][it.ClientMsgID]; !ok || seq != o.res[i].Seq {
					t.Fatalf("acked %s/%s seq %d: stored as %d (%v)", it.ConvID, it.ClientMsgID, o.res[i].Seq, seq, ok)
				}
			}
			continue
		}
		// Within a database a call is all or nothing (its two
		// conversations may live in one database or in two).
		present := map[int]int{}
		total := map[int]int{}
		for _, it := range o.items {
			db, _ := s.Layout().Locate(it.ConvID)
			total[db]++
			if _, ok := stored[it.ConvID][it.ClientMsgID]; ok {
				present[db]++
			}
		}
		for db, n := range present {
			if n != total[db] {
				t.Fatalf("failed call %+v is half-stored in database %d", o.items, db)
			}
		}
		if len(present) > 0 {
			ambiguous++
		}
		// The retry a caller would make: never a second copy.
		res, err := s.AppendMessages(ctx, o.items)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		for i, it := range o.items {
			seq, was := stored[it.ConvID][it.ClientMsgID]
			switch {
			case was && (!res[i].Duplicate || res[i].Seq != seq):
				t.Fatalf("retry of stored %s/%s: %+v, stored seq %d", it.ConvID, it.ClientMsgID, res[i], seq)
			case !was && res[i].Duplicate:
				t.Fatalf("retry of unstored %s/%s came back a duplicate", it.ConvID, it.ClientMsgID)
			}
		}
	}
	t.Logf("%d failed calls were stored in whole or by database (cut during commit, or shares in two databases)", ambiguous)
}
