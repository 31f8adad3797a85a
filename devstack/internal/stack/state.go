package stack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gochat-im/gochat/pkg/ports"
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
	// RecallSecret lets the task service's moderation job call logic's
	// Recall, and nothing else.
	RecallSecret string `json:"recall_secret"`
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

// checkServices returns an error naming the first service port (the
// services', not the embedded servers', which report their own) that
// something already listens on, such as the services of another stack
// started on the same data directory: a child could not bind it, and its
// readiness check would be answered by the other process.
func (p *Ports) checkServices(host string) error {
	type named struct {
		name string
		port int
	}
	all := []named{{"logic", p.Logic}, {"logic admin", p.LogicAdmin}, {"dataproxy", p.DataProxy},
		{"dataproxy admin", p.DataProxyAdmin}, {"task admin", p.TaskAdmin}}
	for i := range p.Gateway {
		all = append(all, named{fmt.Sprintf("gateway %d", i+1), p.Gateway[i]}, named{fmt.Sprintf("gateway %d admin", i+1), p.GatewayAdmin[i]})
	}
	for _, n := range all {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(n.port)))
		if err != nil {
			return fmt.Errorf("port %d (%s) is in use: is another gochat-dev running on this data directory? (%w)", n.port, n.name, err)
		}
		_ = l.Close()
	}
	return nil
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
		port, err := ports.Free(host, taken)
		if err != nil {
			return err
		}
		*ptr, taken[port] = port, true
	}
	return nil
}
