//go:build linux

// Command conns measures how many idle, authenticated WebSocket
// connections GoChat gateways hold and what each costs in gateway memory.
//
// It opens -n connections spread round-robin over the gateways, from
// client sockets bound to many loopback source addresses (-src) so the
// ephemeral port range is no limit, in several worker processes (one
// process may open at most ~20,000 files here). Each connection completes
// the upgrade with a token the tool signs itself with -token-secret (the
// gateway verifies tokens locally with the same secret, see pkg/auth) and
// waits for hello, so it is registered and routable. Once all are open it
// lets the gateways settle, reads each gateway's resident memory from
// /proc/<pid>/status, holds the connections for -hold (sending a heartbeat
// per connection every -keepalive), and prints a summary table.
//
// Gateways come from the file scripts/gateways.sh writes (-gateways) or
// from -gw id=host:port/pid. Without a pid the tool cannot read RSS.
//
//	scripts/gateways.sh start -n 1 -standalone
//	conns -gateways /tmp/gochat-gw/gateways.txt -token-secret-file /tmp/gochat-gw/token-secret -n 19000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/bench/internal/wsload"
)

func main() {
	if wsload.IsWorker() {
		if err := wsload.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "conns worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conns:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o      wsload.Options
		settle time.Duration
		hold   time.Duration
	)
	fs := flag.NewFlagSet("conns", flag.ExitOnError)
	o.Register(fs)
	fs.DurationVar(&settle, "settle", 15*time.Second, "wait this long after the last connection opened before reading gateway memory")
	fs.DurationVar(&hold, "hold", 10*time.Second, "keep the connections open this long after the memory reading, then close them and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of conns (open -n WebSocket connections, report setup rate and gateway RSS per connection):\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if err := o.Resolve(); err != nil {
		return err
	}
	plans, err := o.Plans()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	before := readMem(o.Gateways)
	fmt.Printf("conns: %d connections to %d gateways from %d worker processes, %d source addresses, user prefix %q\n",
		o.N, len(o.Gateways), len(plans), len(plans[0].Sources), o.UIDPrefix)
	gwPIDs := wsload.GatewayPIDs(o.Gateways)
	gwCPU0 := wsload.TotalCPU(gwPIDs)
	start := time.Now()
	fleet, err := wsload.StartFleet(plans)
	if err != nil {
		return err
	}
	defer fleet.Stop()

	// Phase 1: open everything.
	var (
		tick     = time.NewTicker(o.Progress)
		lastConn int64
		lastAt   = start
		peakRate float64
		setupEnd time.Time
	)
	defer tick.Stop()
	deadline := time.After(o.SetupTimeout)
open:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			fmt.Println("conns: setup timeout; measuring what is open")
			setupEnd = time.Now()
			break open
		case now := <-tick.C:
			if err := fleet.Exited(); err != nil {
				return err
			}
			t := fleet.Totals()
			rate := float64(t.Connected-lastConn) / now.Sub(lastAt).Seconds()
			peakRate = max(peakRate, rate)
			lastConn, lastAt = t.Connected, now
			rss, _, _ := wsload.TotalRSS(o.Gateways)
			fmt.Printf("%7s  open %d/%d  +%.0f/s  failed %d  gateway RSS %s%s\n",
				wsload.Dur(now.Sub(start).Truncate(100*time.Millisecond)), t.Open, o.N, rate,
				t.DialErrors+t.SetupErrors, wsload.Bytes(rss), errSuffix(t))
			if t.Done {
				setupEnd = now
				break open
			}
		}
	}
	setup := fleet.Totals()
	cpu := cpuUse{gateway: wsload.TotalCPU(gwPIDs) - gwCPU0, client: wsload.TotalCPU(fleet.PIDs())}
	setupDur := setupEnd.Sub(start)
	if setup.StartNS != 0 && setup.LastOpenNS > setup.StartNS {
		setupDur = time.Duration(setup.LastOpenNS - setup.StartNS)
	}

	// Phase 2: let the gateways settle, then read their memory.
	fmt.Printf("conns: %d open; settling %v before reading gateway memory\n", setup.Open, settle)
	if err := sleep(ctx, settle); err != nil {
		return err
	}
	after := readMem(o.Gateways)
	measured := fleet.Totals()

	// Phase 3: hold.
	if hold > 0 {
		fmt.Printf("conns: holding for %v\n", hold)
		end := time.After(hold)
	holdLoop:
		for {
			select {
			case <-ctx.Done():
				break holdLoop
			case <-end:
				break holdLoop
			case now := <-tick.C:
				t := fleet.Totals()
				rss, _, _ := wsload.TotalRSS(o.Gateways)
				fmt.Printf("%7s  open %d  closed by server %d  gateway RSS %s\n",
					wsload.Dur(now.Sub(start).Truncate(100*time.Millisecond)), t.Open, t.Closed, wsload.Bytes(rss))
			}
		}
	}
	final := fleet.Totals()
	report(o, setup, measured, final, setupDur, peakRate, cpu, before, after)
	return nil
}

// mem is one gateway's memory reading.
type mem struct{ rss, anon int64 }

func readMem(gs []wsload.Gateway) []mem {
	out := make([]mem, len(gs))
	for i, g := range gs {
		if g.PID != 0 {
			out[i].rss, _ = wsload.RSS(g.PID)
			out[i].anon, _ = wsload.AnonRSS(g.PID)
		}
	}
	return out
}

// cpuUse is the CPU time the gateways and the client workers used while
// the connections opened.
type cpuUse struct{ gateway, client time.Duration }

func errSuffix(t wsload.Total) string {
	if len(t.Errors) == 0 {
		return ""
	}
	return "  [" + wsload.TopErrors(t.Errors, 3) + "]"
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func report(o wsload.Options, setup, measured, final wsload.Total, setupDur time.Duration, peak float64, cpu cpuUse, before, after []mem) {
	fmt.Println()
	fmt.Println("## conns summary")
	fmt.Println()
	var sum wsload.Table
	sum.Row("figure", "value", "target (DESIGN.md section 7)")
	sum.Row("connections requested", o.N, "")
	sum.Row("connections open (hello received)", setup.Open, "")
	sum.Row("failed to open", setup.DialErrors+setup.SetupErrors, "0")
	sum.Row("closed by the gateway while held", final.Closed, "0")
	sum.Row("gateways / client processes", fmt.Sprintf("%d / %d", len(o.Gateways), setup.Workers), "")
	sum.Row("setup time (first dial to last hello)", wsload.Dur(setupDur), "")
	sum.Row("setup rate, average", fmt.Sprintf("%.0f conns/s", float64(setup.Connected)/setupDur.Seconds()), "")
	sum.Row("setup rate, best progress interval", fmt.Sprintf("%.0f conns/s", peak), "")
	if setup.Connected > 0 {
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.1f ms per 1000 conns", float64(d.Milliseconds())*1000/float64(setup.Connected))
		}
		sum.Row("CPU during setup: gateways / client workers", per(cpu.gateway)+" / "+per(cpu.client), "")
	}
	sum.Row("dial to hello p50 / p99 / max (p50, p99: histogram bucket lower bounds, up to 3% low)", fmt.Sprintf("%s / %s / %s", wsload.Dur(setup.Setup.Quantile(0.5)),
		wsload.Dur(setup.Setup.Quantile(0.99)), wsload.Dur(setup.Setup.Max())), "")
	var tb, ta, anon, open int64
	for i := range o.Gateways {
		if o.Gateways[i].PID != 0 {
			tb += before[i].rss
			ta += after[i].rss
			anon += after[i].anon
			if i < len(measured.OpenByGW) {
				open += measured.OpenByGW[i]
			}
		}
	}
	if open > 0 {
		sum.Row("gateway RSS before / after (sum)", fmt.Sprintf("%s / %s", wsload.Bytes(tb), wsload.Bytes(ta)), "")
		sum.Row("gateway RSS per connection, (after - before) / open", wsload.Bytes((ta-tb)/open), "<= 3 KiB (issue: <= 4 KiB)")
		sum.Row("gateway anonymous RSS per connection, after / open", wsload.Bytes(anon/open),
			"(all memory the gateways own, fixed costs included)")
	} else {
		sum.Row("gateway RSS", "unknown (no gateway pid given)", "")
	}
	if len(final.Errors) > 0 {
		sum.Row("errors", wsload.TopErrors(final.Errors, 5), "")
	}
	sum.Print(os.Stdout)
	if len(o.Gateways) > 1 || o.Gateways[0].PID != 0 {
		fmt.Println()
		var gt wsload.Table
		gt.Row("gateway", "pid", "open", "RSS before", "RSS after", "(after-before)/open", "anon RSS after", "anon/open")
		for i, g := range o.Gateways {
			n := int64(0)
			if i < len(measured.OpenByGW) {
				n = measured.OpenByGW[i]
			}
			per, perAnon := "-", "-"
			if n > 0 && g.PID != 0 {
				per = wsload.Bytes((after[i].rss - before[i].rss) / n)
				perAnon = wsload.Bytes(after[i].anon / n)
			}
			gt.Row(g.ID, g.PID, n, wsload.Bytes(before[i].rss), wsload.Bytes(after[i].rss), per, wsload.Bytes(after[i].anon), perAnon)
		}
		gt.Print(os.Stdout)
	}
}
