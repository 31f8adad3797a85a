package stack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
