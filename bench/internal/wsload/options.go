//go:build linux

package wsload

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// PerWorker is the most connections one worker holds: a process may open
// 20,000 files here, and a worker needs a few for itself.
const PerWorker = 19_000

// Options are the load settings the conns and push tools share.
type Options struct {
	GatewaysFile string
	GatewaySpecs string
	N            int
	Procs        int
	Sources      string
	Concurrency  int
	Rate         float64
	Secret       string
	SecretFile   string
	UIDPrefix    string
	Device       string
	Keepalive    time.Duration
	ReadEvery    time.Duration
	WorkerProcs  int
	SetupTimeout time.Duration
	Progress     time.Duration

	Gateways []Gateway
	secret   string
}

// Register defines the shared flags.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.GatewaysFile, "gateways", "", "file listing the gateways, as written by scripts/gateways.sh (\"id host:port admin pid\" per line)")
	fs.StringVar(&o.GatewaySpecs, "gw", "", "gateways as id=host:port[/pid],... (instead of -gateways; the pid lets the tool read the gateway's RSS)")
	fs.IntVar(&o.N, "n", 10000, "connections to open, spread round-robin over the gateways")
	fs.IntVar(&o.Procs, "procs", 0, fmt.Sprintf("client worker processes (0: enough for %d connections each)", PerWorker))
	fs.StringVar(&o.Sources, "src", "127.0.0.2-127.0.0.33", "source addresses to bind client sockets to: a, a-b, comma-separated")
	fs.IntVar(&o.Concurrency, "concurrency", 512, "connections that may be between dial and hello at once, in total (split over the workers)")
	fs.Float64Var(&o.Rate, "rate", 0, "most new connections per second in total (0: as fast as the handshakes go)")
	fs.StringVar(&o.Secret, "token-secret", "", "HMAC secret the gateways verify tokens with; the tool signs one token per user itself (default: $GOCHAT_TOKEN_SECRET)")
	fs.StringVar(&o.SecretFile, "token-secret-file", "", "read the token secret from this file (scripts/gateways.sh writes one)")
	fs.StringVar(&o.UIDPrefix, "uid-prefix", "", "user ids are <prefix><i> (default: a random prefix per run)")
	fs.StringVar(&o.Device, "device", "bench", "device id in the tokens")
	fs.DurationVar(&o.Keepalive, "keepalive", 20*time.Second, "each connection sends a heartbeat (an empty pong frame) this often; 0 disables")
	fs.DurationVar(&o.ReadEvery, "read-every", 0, "once its connections are open, a client worker polls at most this often while frames arrive, instead of waking for each one (arrival times are the kernel's receive timestamps either way); 0: at once")
	fs.IntVar(&o.WorkerProcs, "worker-procs", 1, "GOMAXPROCS of each client worker process (0: Go's default); a worker runs one busy goroutine")
	fs.DurationVar(&o.SetupTimeout, "setup-timeout", 10*time.Minute, "give up opening connections after this long")
	fs.DurationVar(&o.Progress, "progress", time.Second, "progress line interval")

}

// Resolve checks the options and loads the gateway list and secret.
func (o *Options) Resolve() error {
	var err error
	switch {
	case o.GatewaysFile != "":
		o.Gateways, err = ReadGatewaysFile(o.GatewaysFile)
	case o.GatewaySpecs != "":
		o.Gateways, err = ParseGatewaySpecs(o.GatewaySpecs)
	default:
		err = errors.New("name the gateways with -gateways FILE or -gw id=host:port")
	}
	if err != nil {
		return err
	}
	o.secret = o.Secret
	if o.SecretFile != "" {
		b, err := os.ReadFile(o.SecretFile)
		if err != nil {
			return err
		}
		o.secret = strings.TrimSpace(string(b))
	}
	if o.secret == "" {
		o.secret = os.Getenv("GOCHAT_TOKEN_SECRET")
	}
	if o.secret == "" {
		return errors.New("no token secret: -token-secret, -token-secret-file or GOCHAT_TOKEN_SECRET")
	}
	if o.N <= 0 || o.Concurrency <= 0 {
		return errors.New("-n and -concurrency must be positive")
	}
	if o.Procs <= 0 {
		o.Procs = (o.N + PerWorker - 1) / PerWorker
	}
	if (o.N+o.Procs-1)/o.Procs > PerWorker {
		return fmt.Errorf("%d connections over %d processes is more than %d per process (the open-file limit)", o.N, o.Procs, PerWorker)
	}
	if o.UIDPrefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.UIDPrefix = "b" + hex.EncodeToString(b) + "-"
	}
	return nil
}

// Plans splits the load over Procs workers.
func (o *Options) Plans() ([]Plan, error) {
	srcs, err := ExpandSources(o.Sources)
	if err != nil {
		return nil, err
	}
	var plans []Plan
	first := 0
	for w := 0; w < o.Procs; w++ {
		count := o.N / o.Procs
		if w < o.N%o.Procs {
			count++
		}
		rate := 0.0
		if o.Rate > 0 {
			rate = o.Rate / float64(o.Procs)
		}
		plans = append(plans, Plan{
			Worker: w, Gateways: o.Gateways, Sources: srcs, First: first, Count: count,
			UIDPrefix: o.UIDPrefix, Device: o.Device, Secret: o.secret, TokenTTL: 24 * time.Hour,
			Concurrency: max(1, o.Concurrency/o.Procs), Rate: rate, Keepalive: o.Keepalive,
			ReadEvery: o.ReadEvery, MaxProcs: o.WorkerProcs,
		})
		first += count
	}
	return plans, nil
}
