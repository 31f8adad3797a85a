// Package metrics defines the Prometheus metrics of the task service. One
// Metrics value is created at start-up, registered on the service registry
// served by the admin endpoint, and shared by the consumer and the jobs.
// Prometheus collectors are safe for concurrent use.
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the task service's collectors. Labels: kind is the job name
// ("offline_push", or "unknown" for records nobody handles); class is the
// HTTP status class of a webhook call ("2xx", "4xx", "5xx", ...) or
// "error" when no response arrived; job is the job that called it.
type Metrics struct {
	Processed    *prometheus.CounterVec   // tasks finished successfully, by kind
	Retried      *prometheus.CounterVec   // attempts that failed and were scheduled again, by kind
	DeadLettered *prometheus.CounterVec   // tasks written to the dead-letter topic, by kind
	Skipped      *prometheus.CounterVec   // tasks acknowledged without work, by kind
	Abandoned    *prometheus.CounterVec   // tasks dropped unfinished because their partition was revoked or the service stopped, by kind
	InFlight     prometheus.Gauge         // tasks consumed and not yet finished (running, waiting to retry or being dead-lettered)
	Paused       prometheus.Gauge         // 1 while fetching is paused because max-inflight was reached
	StoreErrors  prometheus.Counter       // offsets that could not be stored
	DeadErrors   prometheus.Counter       // failed writes to the dead-letter topic (they are retried)
	DeadStuck    prometheus.Gauge         // tasks whose dead-letter write keeps failing (still retried); /readyz fails while above 0
	Webhook      *prometheus.HistogramVec // webhook calls, by job and class
	Verdicts     *prometheus.CounterVec   // moderation outcomes, by verdict
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gochat", Subsystem: "task", Name: name, Help: help}, []string{"kind"})
	}
	m := &Metrics{
		Processed:    counter("processed_total", "Tasks finished successfully."),
		Retried:      counter("retried_total", "Failed attempts that were scheduled for another attempt."),
		DeadLettered: counter("dead_lettered_total", "Tasks written to the dead-letter topic."),
		Skipped:      counter("skipped_total", "Tasks acknowledged without work (for example no webhook configured)."),
		Abandoned:    counter("abandoned_total", "Tasks dropped unfinished because their partition was revoked or the service stopped; another consumer redoes them."),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gochat", Subsystem: "task", Name: "in_flight",
			Help: "Tasks consumed and not finished: running, waiting for a retry or being dead-lettered."}),
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gochat", Subsystem: "task", Name: "fetch_paused",
			Help: "1 while fetching is paused because max-inflight tasks are in flight."}),
		StoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gochat", Subsystem: "task", Name: "offset_store_errors_total",
			Help: "Offsets that could not be stored (usually a partition lost in a rebalance)."}),
		DeadErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gochat", Subsystem: "task", Name: "dead_letter_errors_total",
			Help: "Failed writes to the dead-letter topic; they are retried."}),
		DeadStuck: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gochat", Subsystem: "task", Name: "dead_letter_stuck",
			Help: "Tasks whose dead-letter write has failed many times in a row; they are still retried, their partitions' offsets wait for them, and /readyz fails while this is above 0."}),
		Webhook: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "gochat", Subsystem: "task", Name: "webhook_seconds",
			Help:    "Latency of webhook calls, by job (offline_push, moderate) and HTTP status class or \"error\".",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"job", "class"}),
		Verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gochat", Subsystem: "task", Name: "moderation_verdicts_total",
			Help: "Messages the moderation job judged, by outcome: allowed, recalled, already_recalled (by its sender first), or duplicate (recalled by an earlier attempt)."}, []string{"verdict"}),
	}
	for _, c := range []prometheus.Collector{m.Processed, m.Retried, m.DeadLettered, m.Skipped, m.Abandoned,
		m.InFlight, m.Paused, m.StoreErrors, m.DeadErrors, m.DeadStuck, m.Webhook, m.Verdicts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register task metrics: %w", err)
		}
	}
	return m, nil
}

// InitKinds creates the per-kind series at zero, so dashboards and alerts
// see every job from the start rather than after its first event.
func (m *Metrics) InitKinds(kinds ...string) {
	for _, k := range kinds {
		for _, c := range []*prometheus.CounterVec{m.Processed, m.Retried, m.DeadLettered, m.Skipped, m.Abandoned} {
			c.WithLabelValues(k)
		}
	}
}
