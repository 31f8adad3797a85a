package stack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StateFile is where a data directory remembers its ports and secrets, so
// a restart finds the same endpoints and old tokens stay valid.
const StateFile = "dev.json"

// Ports are the endpoints of an embedded stack.
type Ports struct {
	Etcd, EtcdPeer, Kafka, Redis         int
	Logic, LogicAdmin                    int
	DataProxy, DataProxyAdmin, TaskAdmin int
	// One entry per gateway: its WebSocket and admin ports.
	Gateway, GatewayAdmin []int
}

// State is what StateFile holds.
type State struct {
	Ports       Ports  `json:"ports"`
	AdminSecret string `json:"admin_secret"`
	TokenSecret string `json:"token_secret"`
}

// LoadState reads dir/StateFile; a missing file gives a zero State.
func LoadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", StateFile, err)
	}
	return s, nil
}

func saveState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, StateFile))
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort picks an unused port on host outside the kernel's range of
// ephemeral ports (net.ipv4.ip_local_port_range, 32768-60999 by default).
// A port inside it could be handed to the local end of an outgoing
// connection (a Kafka client's, a connection pool's) between this check and
// the service binding it; that happened in a test run, when the port had
// been picked by asking the kernel for any free one. Ports in taken are
// not picked again.
func freePort(host string, taken map[int]bool) (int, error) {
	lo := ephemeralLow()
	if lo-portFloor >= 1000 {
		for range 500 {
			port := portFloor + mrand.IntN(lo-portFloor)
			if taken[port] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				continue // in use
			}
			l.Close()
			return port, nil
		}
	}
	// No room below the ephemeral range (or all of it busy): any port the
	// kernel calls free.
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken[port] {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// portFloor is the lowest port freePort picks: above the usual fixed ports
// of servers (up to 9999, and MySQL's 33060 lies in the ephemeral range).
const portFloor = 15000

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 0 {
		return 32768
	}
	return lo
}

// fill replaces every zero port with a free one.
func (p *Ports) fill(host string, gateways int) error {
	for len(p.Gateway) < gateways {
		p.Gateway = append(p.Gateway, 0)
	}
	for len(p.GatewayAdmin) < gateways {
		p.GatewayAdmin = append(p.GatewayAdmin, 0)
	}
	all := []*int{&p.Etcd, &p.EtcdPeer, &p.Kafka, &p.Redis, &p.Logic, &p.LogicAdmin, &p.DataProxy, &p.DataProxyAdmin, &p.TaskAdmin}
	for i := range p.Gateway {
		all = append(all, &p.Gateway[i], &p.GatewayAdmin[i])
	}
	taken := map[int]bool{}
	for _, ptr := range all {
		taken[*ptr] = true
	}
	for _, ptr := range all {
		if *ptr != 0 {
			continue
		}
		port, err := freePort(host, taken)
		if err != nil {
			return err
		}
		*ptr, taken[port] = port, true
	}
	return nil
}
