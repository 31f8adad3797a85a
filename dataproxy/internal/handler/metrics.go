package handler

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/dataproxy/internal/store"
	"github.com/gochat-im/gochat/pkg/errcode"
)

// metrics are the handler's Prometheus metrics.
type metrics struct {
	calls   *prometheus.CounterVec   // by method and result code
	latency *prometheus.HistogramVec // by method
	items   *prometheus.CounterVec   // appended items by outcome
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataproxy_rpc_calls_total",
			Help: "RPCs served, by method and result code (ok or an errcode number).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dataproxy_rpc_duration_seconds",
			Help:    "Time spent in the handler per RPC, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 0.1 ms .. ~2.4 s
		}, []string{"method"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataproxy_append_items_total",
			Help: "Messages given to AppendMessages, by outcome: stored, duplicate or rejected.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.latency, m.items} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("handler metrics: %w", err)
			}
		}
	}
	return m, nil
}

// observe records one call; use as defer m.observe(name, time.Now(), &err).
func (m *metrics) observe(method string, start time.Time, err *error) {
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	code := "ok"
	if *err != nil {
		c, _ := errcode.Of(*err)
		code = strconv.Itoa(int(c))
	}
	m.calls.WithLabelValues(method, code).Inc()
}

func (m *metrics) countAppend(res []store.AppendResult) {
	var stored, dup, bad float64
	for _, r := range res {
		switch {
		case r.ErrorCode != 0:
			bad++
		case r.Duplicate:
			dup++
		default:
			stored++
		}
	}
	m.items.WithLabelValues("stored").Add(stored)
	m.items.WithLabelValues("duplicate").Add(dup)
	m.items.WithLabelValues("rejected").Add(bad)
}
