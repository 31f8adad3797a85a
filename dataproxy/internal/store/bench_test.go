package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/ids"
)

// benchCases are the append workloads the benchmarks run against each
// backend: messages per call, and callers in flight per CPU (1 measures
// one call's cost; more lets group commit combine calls).
var benchCases = []struct {
	batch, parallel int
}{
	{1, 1},
	{1, 16},
	{10, 1},
	{10, 16},
}

// benchAppend appends b.N calls of batch messages from parallel*GOMAXPROCS
// goroutines, each writing to its own conversations, and reports messages
// per second.
func benchAppend(b *testing.B, s store.Store, batch, parallel int) {
	var worker atomic.Int64
	body := strings.Repeat("x", 100)
	prefix := fmt.Sprintf("b%d", worker.Add(1)) // unique per run of the function
	b.ReportAllocs()
	b.SetParallelism(parallel)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := strconv.FormatInt(worker.Add(1), 10)
		items := make([]store.AppendItem, batch)
		n := 0
		for pb.Next() {
			for k := range items {
				n++
				peer := prefix + "_p" + w + "_" + strconv.Itoa(n%50)
				items[k] = store.AppendItem{ConvID: ids.P2P("u"+w, peer), Sender: "u" + w, Recipient: peer,
					ClientMsgID: strconv.Itoa(n), ContentType: "text/plain", Body: body}
			}
			res, err := s.AppendMessages(context.Background(), items)
			if err != nil {
				b.Error(err)
				return
			}
			if res[0].ErrorCode != 0 || res[0].Duplicate {
				b.Errorf("result %+v", res[0])
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
}

func runBenchCases(b *testing.B, open func(b *testing.B) store.Store) {
	for _, c := range benchCases {
		b.Run(fmt.Sprintf("batch=%d/par=%d", c.batch, c.parallel), func(b *testing.B) {
			s := open(b)
			defer s.Close()
			benchAppend(b, s, c.batch, c.parallel)
		})
	}
}

func BenchmarkAppendSQLite(b *testing.B) {
	for _, layout := range []struct{ dbs, tables int }{{1, 1}, {4, 1}} {
		for _, sync := range []string{"full", "normal"} {
			b.Run(fmt.Sprintf("dbs=%d/sync=%s", layout.dbs, sync), func(b *testing.B) {
				runBenchCases(b, func(b *testing.B) store.Store {
					s, err := store.OpenSQLite(store.SQLiteConfig{Path: filepath.Join(b.TempDir(), "gochat.db"), DBs: layout.dbs, Sync: sync,
						Options: store.Options{Tables: layout.tables}}, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Ready(context.Background()); err != nil {
						b.Fatal(err)
					}
					return s
				})
			})
		}
	}
}

// BenchmarkAppendMySQL runs against the MariaDB at 127.0.0.1:3306, a fresh
// database per case.
func BenchmarkAppendMySQL(b *testing.B) {
	for _, dbs := range []int{1, 4} {
		b.Run(fmt.Sprintf("dbs=%d", dbs), func(b *testing.B) {
			runBenchCases(b, func(b *testing.B) store.Store {
				var dsns []string
				for range dbs {
					dsns = append(dsns, testDatabase(b))
				}
				return openMySQLCfg(b, store.MySQLConfig{DSNs: dsns, MaxOpen: 8, MaxIdle: 8})
			})
		})
	}
}
