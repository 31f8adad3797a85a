// Package rpcx builds Kitex server and client options for GoChat services:
// registration in and discovery through etcd (kitex-contrib/registry-etcd),
// long-lived connection pools and timeouts.
package rpcx

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/registry"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"github.com/cloudwego/kitex/transport"
	"github.com/gochat-im/gochat/pkg/obs"
	etcdreg "github.com/kitex-contrib/registry-etcd"
)

// Service names in the registry.
const (
	LogicService     = "gochat.logic"
	DataProxyService = "gochat.dataproxy"
)

func init() {
	// Kitex logs every connection event at info level; keep warnings only.
	klog.SetLevel(klog.LevelWarn)
}

// ServerConfig describes a Kitex server.
type ServerConfig struct {
	Service string
	// Listen is host:port. A host of 0.0.0.0 or "" registers the first
	// non-loopback IPv4; set Advertise to publish another address.
	Listen    string
	Advertise string
	Etcd      []string
	// LeaseTTL is how long a dead instance stays listed in etcd, in whole
	// seconds; 0 leaves registry-etcd's default (60 s).
	LeaseTTL time.Duration
	// OnRegistered, if set, runs once the instance is listed in etcd:
	// Kitex registers about a second after it starts listening, and
	// clients cannot find the service before then, so this is the moment
	// to report ready.
	OnRegistered func()
}

// ServerOptions returns options that listen on cfg.Listen and register the
// service in etcd.
func ServerOptions(cfg ServerConfig) ([]server.Option, error) {
	if cfg.LeaseTTL < 0 || (cfg.LeaseTTL > 0 && cfg.LeaseTTL < time.Second) {
		// registry-etcd counts whole seconds: less than one would ask
		// etcd for a lease of 0 s.
		return nil, fmt.Errorf("lease TTL %v: want 0 (registry-etcd's default) or at least 1s", cfg.LeaseTTL)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	if addr.IP.IsUnspecified() {
		// Listen on every interface; registry-etcd then publishes the first
		// non-loopback IPv4 (it would publish "0.0.0.0" verbatim).
		addr.IP = nil
	}
	if cfg.LeaseTTL > 0 {
		// registry-etcd reads its lease TTL from this variable only.
		_ = os.Setenv("KITEX_ETCD_REGISTRY_LEASE_TTL", strconv.Itoa(int(cfg.LeaseTTL/time.Second)))
	}
	inner, err := etcdreg.NewEtcdRegistry(cfg.Etcd, etcdLogger())
	if err != nil {
		return nil, fmt.Errorf("etcd registry: %w", err)
	}
	if cfg.Advertise != "" {
		adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", cfg.Advertise, err)
		}
		etcdreg.SetFixedAddress(inner, adv)
	}
	reg := &trackedRegistry{inner: inner, onRegistered: cfg.OnRegistered}
	return []server.Option{
		server.WithServiceAddr(addr),
		server.WithRegistry(reg),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: cfg.Service}),
		// Business error codes travel in TTHeader metadata; without it a
		// client sees an empty success instead of the error.
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
		server.WithExitWaitTime(2 * time.Second),
		server.WithMaxConnIdleTime(10 * time.Minute),
	}, nil
}

// DefaultTimeout is the timeout of one call when ClientConfig.Timeout is 0.
const DefaultTimeout = 3 * time.Second

// ClientConfig describes a Kitex client.
type ClientConfig struct {
	// Service is the registered name of the callee.
	Service string
	Etcd    []string
	// HostPorts, when set, skips discovery (for tests and tools).
	HostPorts []string
	// Timeout of one call; 0 means DefaultTimeout. A negative timeout is
	// refused: Kitex would fail every call at once.
	Timeout time.Duration
	// Caller names this client in the callee's metrics.
	Caller string
}

// ClientOptions returns options that find cfg.Service through etcd and keep
// a pool of long connections to each instance.
func ClientOptions(cfg ClientConfig) ([]client.Option, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("rpc timeout %v: must not be negative (0 means %v)", cfg.Timeout, DefaultTimeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	opts := []client.Option{
		client.WithRPCTimeout(cfg.Timeout),
		client.WithConnectTimeout(time.Second),
		client.WithLongConnection(connpool.IdleConfig{
			MinIdlePerAddress: 2,
			MaxIdlePerAddress: 64,
			MaxIdleTimeout:    time.Minute,
		}),
		client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: cfg.Caller}),
		// TTHeader carries business error codes (see ServerOptions).
		client.WithTransportProtocol(transport.TTHeader),
		client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
	}
	if len(cfg.HostPorts) > 0 {
		return append(opts, client.WithHostPorts(cfg.HostPorts...)), nil
	}
	res, err := etcdreg.NewEtcdResolver(cfg.Etcd, etcdLogger())
	if err != nil {
		return nil, fmt.Errorf("etcd resolver: %w", err)
	}
	return append(opts, client.WithResolver(clusterResolver{res, "etcd:" + strings.Join(cfg.Etcd, ",")})), nil
}

// etcdLogger has registry-etcd's etcd client log to slog.Default() as it
// is now (obs.EtcdLogger: the service logger once svc.Common.Logger has
// run) instead of writing zap's JSON to stderr. registry-etcd makes the
// clientv3.Config itself; an Option, which gets that config, is the one
// way to give it a logger.
func etcdLogger() etcdreg.Option {
	lg := obs.EtcdLogger(nil)
	return func(c *etcdreg.Config) { c.EtcdConfig.Logger = lg }
}

// clusterResolver names a resolver after its etcd endpoints. Kitex keeps
// one load balancer per resolver name for the whole process, and
// registry-etcd calls every resolver "etcd": a second client of another
// etcd cluster (a test's second run, say) would get the first one's
// balancer and look its services up in the first cluster.
type clusterResolver struct {
	discovery.Resolver
	name string
}

func (r clusterResolver) Name() string { return r.name }

// trackedRegistry wraps registry-etcd: it reports the registration, and
// makes Deregister a no-op when Register never ran (registry-etcd v0.3.0
// dereferences nil there, and Kitex calls it from Stop even when the
// server stops within its first second, before registering).
type trackedRegistry struct {
	inner        registry.Registry
	onRegistered func()

	mu         sync.Mutex
	registered bool
}

func (r *trackedRegistry) Register(info *registry.Info) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.inner.Register(info); err != nil {
		return err
	}
	if !r.registered && r.onRegistered != nil {
		defer r.onRegistered()
	}
	r.registered = true
	return nil
}

func (r *trackedRegistry) Deregister(info *registry.Info) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.registered {
		return nil
	}
	r.registered = false
	return r.inner.Deregister(info)
}
