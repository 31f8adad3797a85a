package wsload

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Gateway is one gateway process under test.
type Gateway struct {
	ID    string
	Addr  string // WebSocket host:port (IPv4)
	Path  string // WebSocket path, default /ws
	Admin string // admin host:port, may be empty
	PID   int    // process id for RSS readings (0: unknown)
}

// ReadGatewaysFile reads the list written by scripts/gateways.sh: one
// gateway per line, "id ws-host:port admin-host:port pid"; blank lines and
// lines starting with # are skipped.
func ReadGatewaysFile(path string) ([]Gateway, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Gateway
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 2 {
			return nil, fmt.Errorf("%s:%d: want \"id host:port [admin] [pid]\"", path, n)
		}
		g := Gateway{ID: fs[0], Addr: fs[1], Path: "/ws"}
		if len(fs) > 2 && fs[2] != "-" {
			g.Admin = fs[2]
		}
		if len(fs) > 3 {
			if g.PID, err = strconv.Atoi(fs[3]); err != nil {
				return nil, fmt.Errorf("%s:%d: pid %q", path, n, fs[3])
			}
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, checkGateways(out)
}

// ParseGatewaySpecs parses "id=host:port[/pid],..." (a quick way to name
// one or two gateways on the command line).
func ParseGatewaySpecs(s string) ([]Gateway, error) {
	var out []Gateway
	for _, spec := range strings.Split(s, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		id, rest, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("gateway %q: want id=host:port[/pid]", spec)
		}
		g := Gateway{ID: id, Path: "/ws"}
		addr, pid, hasPID := strings.Cut(rest, "/")
		g.Addr = addr
		if hasPID {
			n, err := strconv.Atoi(pid)
			if err != nil {
				return nil, fmt.Errorf("gateway %q: bad pid", spec)
			}
			g.PID = n
		}
		out = append(out, g)
	}
	return out, checkGateways(out)
}

func checkGateways(gs []Gateway) error {
	if len(gs) == 0 {
		return fmt.Errorf("no gateways")
	}
	for _, g := range gs {
		ap, err := netip.ParseAddrPort(g.Addr)
		if err != nil || !ap.Addr().Is4() {
			return fmt.Errorf("gateway %s: address %q is not IPv4 host:port", g.ID, g.Addr)
		}
	}
	return nil
}

// RSS returns the resident set size of process pid in bytes, read from
// /proc/<pid>/status (VmRSS).
func RSS(pid int) (int64, error) { return procStatus(pid, "VmRSS:") }

// AnonRSS returns the anonymous part of pid's RSS (RssAnon): the memory the
// process owns, without the pages of its executable and libraries, which
// processes running the same binary share.
func AnonRSS(pid int) (int64, error) { return procStatus(pid, "RssAnon:") }

func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			fs := strings.Fields(v)
			if len(fs) >= 1 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TotalRSS sums the RSS of the gateways with a known pid; n is how many
// were read.
func TotalRSS(gs []Gateway) (total int64, n int, err error) {
	for _, g := range gs {
		if g.PID == 0 {
			continue
		}
		r, e := RSS(g.PID)
		if e != nil {
			err = e
			continue
		}
		total += r
		n++
	}
	return total, n, err
}

// ExpandSources turns "127.0.0.2-127.0.0.20,127.0.1.5" into addresses.
func ExpandSources(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(from)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("source %q: want IPv4", from)
		}
		if !isRange {
			out = append(out, a.String())
			continue
		}
		b, err := netip.ParseAddr(to)
		if err != nil || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("source range %q", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x.String())
			if x == b || len(out) > 1<<16 {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no source addresses")
	}
	return out, nil
}

// CPUTime returns the user+system CPU time process pid has used, from
// /proc/<pid>/stat (clock ticks of 10 ms).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from the closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("pid %d: bad stat", pid)
	}
	fs := strings.Fields(s[i+1:])
	if len(fs) < 13 {
		return 0, fmt.Errorf("pid %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(fs[11], 10, 64)
	st, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pid %d: bad stat times", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// TotalCPU sums CPUTime over pids (unknown or gone processes count 0).
func TotalCPU(pids []int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		if p == 0 {
			continue
		}
		if d, err := CPUTime(p); err == nil {
			t += d
		}
	}
	return t
}

// GatewayPIDs returns the pids of gs (0 where unknown).
func GatewayPIDs(gs []Gateway) []int {
	out := make([]int, len(gs))
	for i, g := range gs {
		out[i] = g.PID
	}
	return out
}

// BoxCPU returns the CPU time the whole machine has spent busy (not idle
// or waiting for I/O) and in total, summed over all CPUs, from /proc/stat.
// The difference of two readings, less the time of the processes under
// test, is what other work took during a measurement.
func BoxCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	if len(fs) < 5 || fs[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var idle, sum int64
	for i, f := range fs[1:] {
		if i >= 8 { // guest times are already counted in user
			break
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		sum += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	tick := 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(sum-idle) * tick, time.Duration(sum) * tick, nil
}
