// Package infra runs GoChat's infrastructure inside one process for
// development and tests: an embedded etcd, a Kafka-protocol broker (kfake,
// which librdkafka speaks to like a real broker) and a Redis-protocol
// server (miniredis). The services connect to them with the same client
// libraries and code paths they use against real clusters.
//
// etcd and Kafka keep their data under Config.Dir and survive a graceful
// restart. The Redis server keeps nothing: GoChat treats Redis as a cache
// that may lose its data (routes are re-sent by gateways, sequence numbers
// live in the SQL store).
package infra

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.etcd.io/etcd/server/v3/embed"
)

// Config says where the servers listen and keep data.
type Config struct {
	Dir       string
	Host      string
	EtcdPort  int
	EtcdPeer  int
	KafkaPort int
	RedisPort int
	// KafkaSyncWrites fsyncs every produce batch (slower, survives a crash
	// of the machine, not only of the process).
	KafkaSyncWrites bool
}

// Infra is the running set of servers.
type Infra struct {
	etcd  *embed.Etcd
	kafka *kfake.Cluster
	redis *miniredis.Miniredis
	rl    *redisListener
	stop  chan struct{}
	log   *slog.Logger
	cfg   Config
}

// Start starts etcd, Kafka and Redis, in that order, and waits until each
// accepts connections.
func Start(cfg Config, log *slog.Logger) (_ *Infra, err error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	in := &Infra{stop: make(chan struct{}), log: log, cfg: cfg}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	if err := in.startEtcd(); err != nil {
		return nil, err
	}
	if err := in.startKafka(); err != nil {
		return nil, err
	}
	if err := in.startRedis(); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Infra) startEtcd() error {
	c := embed.NewConfig()
	c.Name = "gochat-dev"
	c.Dir = filepath.Join(in.cfg.Dir, "etcd")
	client := url.URL{Scheme: "http", Host: in.cfg.Host + ":" + strconv.Itoa(in.cfg.EtcdPort)}
	peer := url.URL{Scheme: "http", Host: in.cfg.Host + ":" + strconv.Itoa(in.cfg.EtcdPeer)}
	c.ListenClientUrls, c.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	c.ListenPeerUrls, c.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	c.InitialCluster = c.Name + "=" + peer.String()
	// etcd logs expected errors while it shuts down; keep its log in a
	// file beside its data rather than in the launcher's output.
	c.LogLevel = "warn"
	c.LogOutputs = []string{filepath.Join(in.cfg.Dir, "etcd.log")}
	e, err := embed.StartEtcd(c)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	in.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		return errors.New("etcd: not ready after 30s")
	}
	return nil
}

func (in *Infra) startKafka() error {
	dir := filepath.Join(in.cfg.Dir, "kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(in.cfg.KafkaPort),
		kfake.DataDir(dir),
		kfake.ClusterID("gochat-dev"),
	}
	if in.cfg.KafkaSyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	k, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kafka (kfake): %w", err)
	}
	in.kafka = k
	return nil
}

func (in *Infra) startRedis() error {
	l, err := net.Listen("tcp", net.JoinHostPort(in.cfg.Host, strconv.Itoa(in.cfg.RedisPort)))
	if err != nil {
		return fmt.Errorf("redis (miniredis): %w", err)
	}
	r, err := newMiniredis()
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("redis (miniredis): %w", err)
	}
	in.redis = r
	in.rl = serveRedis(r.Server(), l)
	// miniredis only ages keys when told to: move its clock with the wall
	// clock so TTLs expire as they would on a real server.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-in.stop:
				return
			case now := <-t.C:
				r.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return nil
}

// EtcdEndpoint is the etcd client address.
func (in *Infra) EtcdEndpoint() string { return in.cfg.Host + ":" + strconv.Itoa(in.cfg.EtcdPort) }

// KafkaBrokers is the Kafka bootstrap address.
func (in *Infra) KafkaBrokers() string { return in.kafka.ListenAddrs()[0] }

// RedisAddr is the Redis address.
func (in *Infra) RedisAddr() string { return in.rl.l.Addr().String() }

// RestartKafka stops the Kafka broker and starts it again on the same port
// and data (a graceful broker restart: clients reconnect).
func (in *Infra) RestartKafka() error {
	in.kafka.Close()
	return in.startKafka()
}

// FlushRedis drops every key, as a Redis restart without persistence does.
func (in *Infra) FlushRedis() { in.redis.FlushAll() }

// Close stops the servers in reverse order; Kafka and etcd write their
// state to disk first.
func (in *Infra) Close() {
	select {
	case <-in.stop:
		return
	default:
		close(in.stop)
	}
	if in.rl != nil {
		in.rl.Close()
	}
	if in.redis != nil {
		in.redis.Close()
	}
	if in.kafka != nil {
		in.kafka.Close()
	}
	if in.etcd != nil {
		in.etcd.Close()
	}
}

// RouteCount is the number of route entries of uid in the embedded Redis,
// read from the server directly (dataproxy's key layout:
// "gochat:route:<uid>", one hash field per device).
func (in *Infra) RouteCount(uid string) int {
	keys, err := in.redis.HKeys("gochat:route:" + uid)
	if err != nil {
		return 0
	}
	return len(keys)
}
