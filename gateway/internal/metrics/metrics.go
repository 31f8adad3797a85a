// Package metrics defines the gateway's Prometheus metrics.
//
// Counters on the frame paths are plain atomic adds. Connection counts are
// not kept as gauges that every connect and close would have to update:
// they are read from the connection table when Prometheus scrapes, per shard
// and in total, with each shard's push and lock-wait counters, so operators
// can see how evenly users spread over the shards when tuning the shard
// count.
//
// Concurrency: all methods are safe for concurrent use.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochat-im/gochat/gateway/internal/conntable"
)

const ns = "gochat_gateway"

// Metrics are the gateway's metrics.
type Metrics struct {
	Handshakes      *prometheus.CounterVec
	FramesInTotal   prometheus.Counter
	FramesOutTotal  prometheus.Counter
	PushRecords     *prometheus.CounterVec
	Pushes          prometheus.Counter
	PushMisses      prometheus.Counter
	SlowClients     prometheus.Counter
	Floods          prometheus.Counter
	Produced        prometheus.Counter
	ProduceErrors   prometheus.Counter
	RPCErrors       *prometheus.CounterVec
	RouteBatches    *prometheus.CounterVec
	RouteErrors     *prometheus.CounterVec
	ClientErrors    *prometheus.CounterVec
	RPCRejected     prometheus.Counter
	DownstreamError prometheus.Counter
	TypingDropped   prometheus.Counter
	Refused         prometheus.Counter

	reg prometheus.Registerer
}

// New creates the metrics and registers them with reg (nil: not
// registered, for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "handshakes_total",
			Help: "WebSocket handshakes by result: ok, or the reason the connection was refused.",
		}, []string{"result"}),
		FramesInTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "frames_in_total", Help: "WebSocket frames received from clients.",
		}),
		FramesOutTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "frames_out_total", Help: "WebSocket frames (and handshake responses) written to clients.",
		}),
		PushRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "downstream_records_total", Help: "Downstream records consumed, by kind.",
		}, []string{"kind"}),
		Pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "pushes_total", Help: "Frames queued to local connections from downstream records.",
		}),
		PushMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "push_misses_total", Help: "Downstream targets with no matching open connection here (gone, or uid mismatch).",
		}),
		SlowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "slow_client_disconnects_total", Help: "Connections closed because the client did not read fast enough.",
		}),
		Floods: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "flood_disconnects_total", Help: "Connections closed (1008) for sending more than four times -max-msg-rate frames in one second, or for sending faster than their frames are handled (8 MiB waiting).",
		}),
		Produced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_produced_total", Help: "Client records (sends, recalls, cursors, typing) acknowledged by Kafka.",
		}),
		ProduceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_produce_errors_total", Help: "Client records (sends, recalls, cursors, typing) that could not be written to Kafka.",
		}),
		RPCErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "logic_rpc_errors_total", Help: "Failed calls to logic, by method.",
		}, []string{"method"}),
		RouteBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "route_batches_total", Help: "Connect/Disconnect batches sent to logic, by call.",
		}, []string{"call"}),
		RouteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "route_batch_errors_total", Help: "Connect/Disconnect batches that failed, by call.",
		}, []string{"call"}),
		ClientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "client_errors_total", Help: "Error frames sent to clients for bad requests, by reason.",
		}, []string{"reason"}),
		RPCRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "rpc_rejected_total", Help: "Calls to logic (sync, conversations, group operations, ping cursors) refused because the worker queue was full.",
		}),
		DownstreamError: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "downstream_errors_total", Help: "Downstream records that could not be decoded or consumer errors.",
		}),
		TypingDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "typing_dropped_total", Help: "Typing indicators dropped because a connection sent more than one per second.",
		}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "logins_refused_total", Help: "New connections closed with a kick before opening: the login policy preferred a later connection registered in the same Connect call.",
		}),
	}
	m.reg = reg
	if reg != nil {
		reg.MustRegister(m.Handshakes, m.FramesInTotal, m.FramesOutTotal, m.PushRecords, m.Pushes,
			m.PushMisses, m.SlowClients, m.Floods, m.Produced, m.ProduceErrors, m.RPCErrors, m.RouteBatches,
			m.RouteErrors, m.ClientErrors, m.RPCRejected, m.DownstreamError, m.TypingDropped, m.Refused)
	}
	return m
}

// FrameIn counts one received frame.
func (m *Metrics) FrameIn() { m.FramesInTotal.Inc() }

// FramesOut counts written frames.
func (m *Metrics) FramesOut(n int) { m.FramesOutTotal.Add(float64(n)) }

// SlowClient counts a slow-client disconnect.
func (m *Metrics) SlowClient() { m.SlowClients.Inc() }

// Flooded counts a connection closed for sending too many frames.
func (m *Metrics) Flooded() { m.Floods.Inc() }

// TableStats reports per-shard counters and handshakes pending.
type TableStats interface {
	Shards() int
	Stats(i int) conntable.ShardStats
	PendingLen() int
}

// WatchTable exports the connection table's counters, read from t at
// scrape time (a no-op for unregistered metrics): connections in total and
// per shard, pushes per shard, and per shard how often and how long
// callers waited for its lock. Uneven shard counts, or lock waits that
// grow with load, tell an operator to change -shards (docs/TUNING.md).
func (m *Metrics) WatchTable(t TableStats) error {
	if m.reg == nil {
		return nil
	}
	return m.reg.Register(&tableCollector{t: t,
		total:     prometheus.NewDesc(ns+"_connections", "Authenticated connections open.", nil, nil),
		shard:     prometheus.NewDesc(ns+"_shard_connections", "Authenticated connections open per connection-table shard.", []string{"shard"}, nil),
		pushes:    prometheus.NewDesc(ns+"_shard_pushes_total", "Pushes routed through each connection-table shard.", []string{"shard"}, nil),
		contended: prometheus.NewDesc(ns+"_shard_lock_contended_total", "Connection-table shard lock acquisitions that had to wait.", []string{"shard"}, nil),
		wait:      prometheus.NewDesc(ns+"_shard_lock_wait_seconds_total", "Time spent waiting for each connection-table shard lock.", []string{"shard"}, nil),
		pend:      prometheus.NewDesc(ns+"_handshaking_connections", "Connections still in the WebSocket handshake.", nil, nil),
	})
}

// WatchWriters exports the number of writer goroutines started (read at
// scrape time): above the core count, it is how many clients were at once
// too slow to take their data.
func (m *Metrics) WatchWriters(workers func() int) error {
	if m.reg == nil {
		return nil
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "writers",
		Help: "Writer goroutines started (they stay parked for reuse); growth beyond 4 per CPU means clients blocked writes.",
	}, func() float64 { return float64(workers()) }))
}

type tableCollector struct {
	t                                           TableStats
	total, shard, pushes, contended, wait, pend *prometheus.Desc
}

func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.shard, c.pushes, c.contended, c.wait, c.pend} {
		ch <- d
	}
}

func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	total := 0
	for i := 0; i < c.t.Shards(); i++ {
		st := c.t.Stats(i)
		total += st.Conns
		label := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(c.shard, prometheus.GaugeValue, float64(st.Conns), label)
		ch <- prometheus.MustNewConstMetric(c.pushes, prometheus.CounterValue, float64(st.Pushes), label)
		ch <- prometheus.MustNewConstMetric(c.contended, prometheus.CounterValue, float64(st.Contended), label)
		ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, st.Wait.Seconds(), label)
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(c.pend, prometheus.GaugeValue, float64(c.t.PendingLen()))
}

// Batch counts one route registration call.
func (m *Metrics) Batch(call string, ok bool) {
	m.RouteBatches.WithLabelValues(call).Inc()
	if !ok {
		m.RouteErrors.WithLabelValues(call).Inc()
	}
}

// Record counts one downstream record of kind.
func (m *Metrics) Record(kind string) { m.PushRecords.WithLabelValues(kind).Inc() }

// Pushed counts frames queued to local connections.
func (m *Metrics) Pushed(n int) { m.Pushes.Add(float64(n)) }

// Missed counts downstream targets not found here.
func (m *Metrics) Missed(n int) { m.PushMisses.Add(float64(n)) }
