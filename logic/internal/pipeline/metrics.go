package pipeline

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the send path's counters.
type Metrics struct {
	persisted      prometheus.Counter
	duplicates     prometheus.Counter
	offline        prometheus.Counter
	archived       prometheus.Counter
	moderation     prometheus.Counter
	rejected       *prometheus.CounterVec
	cursorFailures prometheus.Counter
	// routeLookupRefused counts batches sent without pushes because
	// dataproxy refused their route lookup.
	routeLookupRefused prometheus.Counter
	// appendSplits counts AppendMessages calls dataproxy refused whole for
	// their size and that were sent again in halves.
	appendSplits   prometheus.Counter
	batchSize      prometheus.Histogram
	persistLatency prometheus.Histogram
}

// NewMetrics registers the metrics on reg (which may be nil in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		persisted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_messages_persisted_total", Help: "Messages stored and acknowledged."}),
		duplicates:     prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_messages_duplicate_total", Help: "Retransmitted sends answered with the original ack."}),
		offline:        prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_offline_tasks_total", Help: "Offline-push tasks emitted."}),
		archived:       prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_archive_tasks_total", Help: "Archive tasks emitted (logic -archive)."}),
		moderation:     prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_moderation_tasks_total", Help: "Moderation tasks emitted (logic -moderate)."}),
		cursorFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_cursor_updates_refused_total", Help: "Batches whose cursor updates dataproxy refused (cursors are advisory; the messages are unaffected)."}),
		routeLookupRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_route_lookups_refused_total",
			Help: "Batches stored and acked without pushes because dataproxy refused their route lookup (recipients catch up by their inbox cursor)."}),
		appendSplits: prometheus.NewCounter(prometheus.CounterOpts{Name: "gochat_logic_append_splits_total",
			Help: "AppendMessages calls dataproxy refused whole (too many bytes or items together) and that were sent again in halves."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gochat_logic_sends_rejected_total", Help: "Sends answered with an error, by reason."}, []string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gochat_logic_batch_records", Help: "Upstream records handled per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		persistLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gochat_logic_persist_seconds", Help: "From gateway receipt to persisted.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.persisted, m.duplicates, m.offline, m.archived, m.moderation, m.rejected, m.cursorFailures, m.routeLookupRefused, m.appendSplits, m.batchSize, m.persistLatency)
	}
	return m
}
