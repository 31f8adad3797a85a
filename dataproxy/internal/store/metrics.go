package store

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics publishes the store's totals (Stats) and the connection
// pools of its databases on reg, read when scraped.
func RegisterMetrics(reg prometheus.Registerer, s *SQLStore) error {
	counter := func(name, help string, v func(Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(s.Stats())) })
	}
	cs := []prometheus.Collector{
		counter("dataproxy_store_commits_total", "Append transactions committed (each may carry many calls: group commit).",
			func(st Stats) uint64 { return st.Commits }),
		counter("dataproxy_store_batched_calls_total", "Per-database shares of append calls carried by committed transactions; divided by commits, the mean batch.",
			func(st Stats) uint64 { return st.BatchedCalls }),
		counter("dataproxy_store_batch_splits_total", "Batches that failed on a statement and were committed call by call.",
			func(st Stats) uint64 { return st.Splits }),
		counter("dataproxy_store_deadlock_retries_total", "Append transactions run again after a deadlock.",
			func(st Stats) uint64 { return st.Retries }),
		counter("dataproxy_store_replica_reads_total", "Reads answered by a read replica.",
			func(st Stats) uint64 { return st.ReplicaReads }),
		counter("dataproxy_store_replica_misses_total", "Reads a replica could not answer (lagging or failing) that went to the primary.",
			func(st Stats) uint64 { return st.ReplicaMisses }),
		counter("dataproxy_store_checkpoints_total", "SQLite background checkpoints run (each copies the write-ahead log, as far as no reader still needs it, into its database file).",
			func(st Stats) uint64 { return st.Checkpoints }),
		counter("dataproxy_store_checkpoint_failures_total", "SQLite background checkpoints that failed (the writer's own checkpoint, at 128 MiB of log, still bounds the log).",
			func(st Stats) uint64 { return st.CheckpointFailures }),
		counter("dataproxy_store_list_rows_total", "Conversation-list rows written because this process had not seen them yet.",
			func(st Stats) uint64 { return st.IndexRows }),
		&poolCollector{s: s},
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("store metrics: %w", err)
		}
	}
	return nil
}

// poolCollector reports database/sql pool statistics per shard, for sizing
// the pools.
type poolCollector struct{ s *SQLStore }

var (
	poolOpen    = prometheus.NewDesc("dataproxy_db_open_connections", "Open connections of a shard's primary write pool.", []string{"shard"}, nil)
	poolBusy    = prometheus.NewDesc("dataproxy_db_in_use_connections", "Connections in use in a shard's primary write pool.", []string{"shard"}, nil)
	poolWait    = prometheus.NewDesc("dataproxy_db_wait_seconds_total", "Time spent waiting for a free connection of a shard's primary write pool.", []string{"shard"}, nil)
	queueLen    = prometheus.NewDesc("dataproxy_store_queued_calls", "Append calls waiting for a shard's group committer.", []string{"shard"}, nil)
	walRestarts = prometheus.NewDesc("dataproxy_store_wal_restarts_total", "SQLite: times a shard's write-ahead log started over (was written from its beginning again once every frame was copied), as counted by its background checkpoints.", []string{"shard"}, nil)
	walFrames   = prometheus.NewDesc("dataproxy_store_wal_frames", "SQLite: frames (pages) in the write-ahead log at the last background checkpoint (the writer checkpoints in a commit once it passes 32768).", []string{"shard"}, nil)
	walBehind   = prometheus.NewDesc("dataproxy_store_wal_frames_uncopied", "SQLite: write-ahead-log frames the last background checkpoint could not copy because readers still needed them (growing: a long reader holds the log).", []string{"shard"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolOpen
	ch <- poolBusy
	ch <- poolWait
	ch <- queueLen
	ch <- walFrames
	ch <- walBehind
	ch <- walRestarts
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.s.dbs {
		shard := strconv.Itoa(d.index)
		st := d.w.Stats()
		ch <- prometheus.MustNewConstMetric(poolOpen, prometheus.GaugeValue, float64(st.OpenConnections), shard)
		ch <- prometheus.MustNewConstMetric(poolBusy, prometheus.GaugeValue, float64(st.InUse), shard)
		ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, st.WaitDuration.Seconds(), shard)
		ch <- prometheus.MustNewConstMetric(queueLen, prometheus.GaugeValue, float64(len(d.gc.queue)), shard)
		if d.ckpt != nil {
			ch <- prometheus.MustNewConstMetric(walFrames, prometheus.GaugeValue, float64(d.ckpt.frames.Load()), shard)
			ch <- prometheus.MustNewConstMetric(walBehind, prometheus.GaugeValue, float64(d.ckpt.behind.Load()), shard)
			ch <- prometheus.MustNewConstMetric(walRestarts, prometheus.CounterValue, float64(d.ckpt.restarts.Load()), shard)
		}
	}
}
