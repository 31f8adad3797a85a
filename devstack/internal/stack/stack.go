// Package stack starts a whole GoChat deployment on one machine: the
// embedded infrastructure (package infra) in this process, and the four
// services as child processes running the same binaries as production,
// pointed at it by flags. `make run` and the end-to-end tests both use it.
//
// A child that exits while the stack is running is restarted after a
// second, as a process supervisor would. Stack's methods are safe for
// concurrent use.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/infra"
)

// Config describes the stack to start.
type Config struct {
	// BinDir holds the gateway, logic, task and dataproxy binaries.
	BinDir string
	// DataDir keeps every piece of state; reuse it to restart.
	DataDir string
	// Host is the address every server binds (loopback by default).
	Host string
	// Ports fixes ports; zero ones are chosen free on first start and
	// remembered in the data directory.
	Ports Ports
	// Gateways is the number of gateway processes (ids gw1, gw2, ...).
	Gateways int
	// WebhookURL receives offline-push tasks (empty: the task service
	// counts and drops them).
	WebhookURL string
	// Logs receives every child's output, each line prefixed with its
	// name; nil writes to one file per service under DataDir/logs.
	Logs io.Writer
	// KafkaConfig is passed to every service's -kafka-config.
	KafkaConfig string
	// UpPartitions is the partition count of the upstream topic, given to
	// logic and the gateways (whichever starts first creates the topic);
	// 0 means DefaultUpPartitions. An existing topic keeps its count.
	UpPartitions int
	// Extra adds flags per service name ("gateway", "logic", "task",
	// "dataproxy").
	Extra map[string][]string
}

// DefaultUpPartitions is the upstream topic's partition count on a
// development stack. The services' own default, 16, leaves room for 16
// logic instances; one box runs one, whose workers each take a share of
// the partitions, and the gateway's producer sends one produce request per
// partition it has records for in a linger window, so fewer partitions
// mean fewer, fuller requests for the gateway, the broker and logic's
// fetches (measured in docs/BENCHMARKS.md: about 6% less CPU for the
// stack and a lower latency at 5,000 msg/s). Four still gives each of
// logic's workers partitions of its own (two each with devLogicWorkers),
// and leaves room for a second logic instance.
const DefaultUpPartitions = 4

// The development stack's logic takes upstream records with 2 workers of
// up to 512 records each, where its defaults are 4 of 256: the embedded
// store has one SQLite writer, which two batches in flight keep busy (one
// committing, the next queued; dataproxy merges what waits into one
// transaction), and more workers only split the same records into more,
// smaller calls, each with its fixed costs in logic, dataproxy and Kafka.
// The larger batch keeps the most records in flight the same. Measured in
// docs/BENCHMARKS.md: 4-8% less CPU for the stack at 5,000 msg/s and a
// lower p99 at 20,000 msg/s in four pairs of four.
const (
	devLogicWorkers  = "2"
	devLogicMaxBatch = "512"
)

// Stack is a running deployment.
type Stack struct {
	cfg   Config
	state State
	infra *infra.Infra
	log   *slog.Logger

	mu       sync.Mutex
	procs    []*proc
	stopping bool
}

// Start brings up infrastructure and services and waits until each service
// reports ready.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Stack, err error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Gateways <= 0 {
		cfg.Gateways = 1
	}
	if cfg.UpPartitions <= 0 {
		cfg.UpPartitions = DefaultUpPartitions
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	st, err := LoadState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	mergePorts(&st.Ports, cfg.Ports)
	if err := st.Ports.fill(cfg.Host, cfg.Gateways); err != nil {
		return nil, err
	}
	if err := st.Ports.checkServices(cfg.Host); err != nil {
		return nil, err
	}
	if st.AdminSecret == "" {
		st.AdminSecret = randomSecret()
	}
	if st.TokenSecret == "" {
		st.TokenSecret = randomSecret()
	}
	if st.RecallSecret == "" {
		st.RecallSecret = randomSecret()
	}
	if err := saveState(cfg.DataDir, st); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, state: st, log: log}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	s.infra, err = infra.Start(infra.Config{
		Dir: cfg.DataDir, Host: cfg.Host,
		EtcdPort: st.Ports.Etcd, EtcdPeer: st.Ports.EtcdPeer, KafkaPort: st.Ports.Kafka, RedisPort: st.Ports.Redis,
	}, log)
	if err != nil {
		return nil, err
	}
	// dataproxy first: logic needs it to serve; logic before the gateways,
	// which register connections with it; task last.
	for _, p := range s.plan() {
		if err := s.launch(ctx, p); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func mergePorts(dst *Ports, src Ports) {
	set := func(d *int, v int) {
		if v != 0 {
			*d = v
		}
	}
	set(&dst.Etcd, src.Etcd)
	set(&dst.EtcdPeer, src.EtcdPeer)
	set(&dst.Kafka, src.Kafka)
	set(&dst.Redis, src.Redis)
	set(&dst.Logic, src.Logic)
	set(&dst.LogicAdmin, src.LogicAdmin)
	set(&dst.DataProxy, src.DataProxy)
	set(&dst.DataProxyAdmin, src.DataProxyAdmin)
	set(&dst.TaskAdmin, src.TaskAdmin)
	for i, v := range src.Gateway {
		for len(dst.Gateway) <= i {
			dst.Gateway = append(dst.Gateway, 0)
		}
		set(&dst.Gateway[i], v)
	}
	for i, v := range src.GatewayAdmin {
		for len(dst.GatewayAdmin) <= i {
			dst.GatewayAdmin = append(dst.GatewayAdmin, 0)
		}
		set(&dst.GatewayAdmin[i], v)
	}
}

func (s *Stack) addr(port int) string { return s.cfg.Host + ":" + strconv.Itoa(port) }

// plan lists the child processes in start order.
func (s *Stack) plan() []*proc {
	p := s.state.Ports
	common := func(admin int) []string {
		return []string{"-etcd", s.infra.EtcdEndpoint(), "-admin-listen", s.addr(admin)}
	}
	// dataproxy has no Kafka settings: it never talks to Kafka.
	kafka := func(args []string) []string {
		args = append(args, "-kafka-brokers", s.infra.KafkaBrokers())
		if s.cfg.KafkaConfig != "" {
			args = append(args, "-kafka-config", s.cfg.KafkaConfig)
		}
		return args
	}
	env := []string{"GOCHAT_TOKEN_SECRET=" + s.state.TokenSecret, "GOCHAT_ADMIN_SECRET=" + s.state.AdminSecret}
	recall := "GOCHAT_RECALL_SECRET=" + s.state.RecallSecret
	up := strconv.Itoa(s.cfg.UpPartitions)
	procs := []*proc{
		{name: "dataproxy", bin: "dataproxy", admin: p.DataProxyAdmin, args: append(common(p.DataProxyAdmin),
			"-listen", s.addr(p.DataProxy),
			"-store", "sqlite",
			"-data-dir", s.cfg.DataDir,
			"-redis-addr", s.infra.RedisAddr())},
		{name: "logic", bin: "logic", admin: p.LogicAdmin, env: append(env, recall), args: append(kafka(common(p.LogicAdmin)),
			"-listen", s.addr(p.Logic), "-up-partitions", up, "-workers", devLogicWorkers, "-max-batch", devLogicMaxBatch)},
	}
	for i := range s.cfg.Gateways {
		id := "gw" + strconv.Itoa(i+1)
		// A development gateway holds few connections: a 64 MiB GC floor
		// costs nothing there and keeps collections off the message path
		// (the gateway's own default favours memory per connection).
		procs = append(procs, &proc{name: "gateway-" + id, bin: "gateway", admin: p.GatewayAdmin[i], env: env,
			args: append(kafka(common(p.GatewayAdmin[i])), "-id", id, "-listen", s.addr(p.Gateway[i]), "-gc-min-heap", "64", "-up-partitions", up)})
	}
	// The task service's moderation job recalls messages with the recall
	// secret, which opens nothing else of logic's.
	procs = append(procs, &proc{name: "task", bin: "task", admin: p.TaskAdmin, env: []string{recall}, args: append(kafka(common(p.TaskAdmin)),
		"-webhook-url", s.cfg.WebhookURL)})
	for _, pr := range procs {
		kind := pr.bin
		pr.args = append(pr.args, s.cfg.Extra[kind]...)
	}
	return procs
}

// WebSocketURL is the address clients connect to on gateway i (0-based).
func (s *Stack) WebSocketURL(i int) string {
	return "ws://" + s.addr(s.state.Ports.Gateway[i]) + "/ws"
}

// State returns the ports and secrets in use.
func (s *Stack) State() State { return s.state }

// EtcdEndpoint is the etcd client address.
func (s *Stack) EtcdEndpoint() string { return s.infra.EtcdEndpoint() }

// KafkaBrokers is the Kafka bootstrap address.
func (s *Stack) KafkaBrokers() string { return s.infra.KafkaBrokers() }

// RedisAddr is the Redis address.
func (s *Stack) RedisAddr() string { return s.infra.RedisAddr() }

// LogicAddr is logic's Kitex address.
func (s *Stack) LogicAddr() string { return s.addr(s.state.Ports.Logic) }

// RestartKafka restarts the Kafka broker in place.
func (s *Stack) RestartKafka() error { return s.infra.RestartKafka() }

// FlushRedis drops every Redis key, as a Redis restart without persistence.
func (s *Stack) FlushRedis() { s.infra.FlushRedis() }

// Stop stops the services (gateways and task first, dataproxy last), each
// with SIGTERM and up to 20 s to finish, then the infrastructure.
func (s *Stack) Stop() {
	s.mu.Lock()
	s.stopping = true
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(20 * time.Second)
	}
	if s.infra != nil {
		s.infra.Close()
	}
}

// PIDs returns the process id of each running service, by name.
func (s *Stack) PIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, p := range s.procs {
		p.mu.Lock()
		if p.cmd != nil && p.cmd.Process != nil {
			out[p.name] = p.cmd.Process.Pid
		}
		p.mu.Unlock()
	}
	return out
}

// Kill sends SIGKILL to the named service (for fault tests); the
// supervisor starts it again.
func (s *Stack) Kill(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.name == name {
			return p.signal(syscall.SIGKILL)
		}
	}
	return fmt.Errorf("no service %q", name)
}

// waitReady polls the admin /readyz of p until it answers 200.
func waitReady(ctx context.Context, p *proc, addr string) error {
	url := "http://" + addr + "/readyz"
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (see its log)", p.name)
		}
		resp, err := cl.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after 90s", p.name)
}

func (s *Stack) launch(ctx context.Context, p *proc) error {
	p.path = filepath.Join(s.cfg.BinDir, p.bin)
	if _, err := os.Stat(p.path); err != nil {
		return fmt.Errorf("binary for %s: %w (run `make build`)", p.name, err)
	}
	out, err := s.output(p.name)
	if err != nil {
		return err
	}
	p.out = out
	p.log = s.log
	if err := p.start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	go s.supervise(p)
	if err := waitReady(ctx, p, s.addr(p.admin)); err != nil {
		return err
	}
	s.log.Debug("service ready", "svc", p.name)
	return nil
}

func (s *Stack) output(name string) (io.Writer, error) {
	if s.cfg.Logs != nil {
		return &prefixWriter{w: s.cfg.Logs, prefix: []byte(name + " | ")}, nil
	}
	dir := filepath.Join(s.cfg.DataDir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// supervise restarts p whenever it exits while the stack runs.
func (s *Stack) supervise(p *proc) {
	for {
		err := p.wait()
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping || p.stopped() {
			return
		}
		s.log.Warn("service exited; restarting in 1s", "svc", p.name, "err", err)
		time.Sleep(time.Second)
		s.mu.Lock()
		stopping = s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		if err := p.start(); err != nil {
			s.log.Error("restart failed", "svc", p.name, "err", err)
			return
		}
	}
}

var errNotRunning = errors.New("not running")

// RouteCount is the number of devices Redis lists as online for uid (for
// tests; it reads the embedded Redis directly).
func (s *Stack) RouteCount(uid string) int {
	return s.infra.RouteCount(uid)
}
