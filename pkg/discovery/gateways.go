// Package discovery keeps the set of live gateways in etcd.
//
// Each gateway puts /gochat/gateways/<id> = JSON(Gateway) under a lease it
// keeps alive; when the process dies the lease expires and the key goes.
// Logic watches the prefix and treats a route whose gateway is missing as
// gone. Kitex services (logic, dataproxy) use registry-etcd instead; see
// package rpcx.
package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/gochat-im/gochat/pkg/obs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// GatewayPrefix is the etcd key prefix of gateway registrations.
const GatewayPrefix = "/gochat/gateways/"

// Gateway is what a gateway publishes about itself.
type Gateway struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Topic     string `json:"topic"`
	StartedAt int64  `json:"started_at"`
	// Batches says the gateway takes BATCH downstream records (several
	// records in one); DownPartitions is the partition count of its topic,
	// which a producer needs to put a batch where its records' keys map.
	// Gateways from before batches publish neither.
	Batches        bool `json:"batches,omitempty"`
	DownPartitions int  `json:"down_partitions,omitempty"`
}

// NewClient dials etcd. The client logs to slog.Default() as it is now
// (obs.EtcdLogger), which is the service logger once svc.Common.Logger
// has run.
func NewClient(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               obs.EtcdLogger(nil),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return cli, nil
}

// Registration is a gateway's live key; Close removes it.
type Registration struct {
	cli    *clientv3.Client
	key    string
	lease  clientv3.LeaseID
	cancel context.CancelFunc
	done   chan struct{}
}

// Register publishes g under a lease of ttl and keeps it alive, putting the
// key back if the lease is lost (for example after an etcd restart), until
// Close.
func Register(ctx context.Context, cli *clientv3.Client, g Gateway, ttl time.Duration, log *slog.Logger) (*Registration, error) {
	val, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	r := &Registration{cli: cli, key: GatewayPrefix + g.ID, done: make(chan struct{})}
	if err := r.put(ctx, string(val), ttl); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.keep(kctx, string(val), ttl, log)
	return r, nil
}

func (r *Registration) put(ctx context.Context, val string, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lease, err := r.cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return fmt.Errorf("etcd grant: %w", err)
	}
	if _, err := r.cli.Put(ctx, r.key, val, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("etcd put %s: %w", r.key, err)
	}
	r.lease = lease.ID
	return nil
}

func (r *Registration) keep(ctx context.Context, val string, ttl time.Duration, log *slog.Logger) {
	defer close(r.done)
	for {
		ch, err := r.cli.KeepAlive(ctx, r.lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("gateway registration lost; registering again", "key", r.key, "err", err)
		for ctx.Err() == nil {
			if err := r.put(ctx, val, ttl); err == nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Close stops the keepalive and deletes the key.
func (r *Registration) Close() {
	r.cancel()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _ = r.cli.Revoke(ctx, r.lease)
}

// Watcher holds the current set of live gateways.
type Watcher struct {
	cli  *clientv3.Client
	mu   sync.RWMutex
	live map[string]Gateway
	// ready closes after the first full load.
	ready chan struct{}
}

// Watch loads the gateways and follows changes until ctx ends.
func Watch(ctx context.Context, cli *clientv3.Client, log *slog.Logger) *Watcher {
	w := &Watcher{cli: cli, live: map[string]Gateway{}, ready: make(chan struct{})}
	go w.run(ctx, cli, log)
	return w
}

func (w *Watcher) run(ctx context.Context, cli *clientv3.Client, log *slog.Logger) {
	first := true
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, GatewayPrefix, clientv3.WithPrefix())
		if err != nil {
			log.Warn("etcd: list gateways", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		live := map[string]Gateway{}
		for _, kv := range resp.Kvs {
			var g Gateway
			if json.Unmarshal(kv.Value, &g) == nil {
				live[g.ID] = g
			}
		}
		w.mu.Lock()
		w.live = live
		w.mu.Unlock()
		if first {
			close(w.ready)
			first = false
		}
		wch := cli.Watch(ctx, GatewayPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			w.mu.Lock()
			for _, ev := range wr.Events {
				id := string(ev.Kv.Key[len(GatewayPrefix):])
				if ev.Type == clientv3.EventTypeDelete {
					delete(w.live, id)
					continue
				}
				var g Gateway
				if json.Unmarshal(ev.Kv.Value, &g) == nil {
					w.live[id] = g
				}
			}
			w.mu.Unlock()
		}
	}
}

// Ready is closed once the first listing has loaded.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Get returns the live gateway with id.
func (w *Watcher) Get(id string) (Gateway, bool) {
	w.mu.RLock()
	g, ok := w.live[id]
	w.mu.RUnlock()
	return g, ok
}

// Confirm is Get for a gateway that must exist a moment ago (it produced
// the record being handled): when the watch has not delivered its
// registration yet, it asks etcd directly.
func (w *Watcher) Confirm(ctx context.Context, id string) bool {
	if _, ok := w.Get(id); ok {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := w.cli.Get(ctx, GatewayPrefix+id, clientv3.WithCountOnly())
	return err == nil && resp.Count > 0
}

// All returns a copy of the live set.
func (w *Watcher) All() map[string]Gateway {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return maps.Clone(w.live)
}
