// Package devstate reads what the bench tools need from the data directory
// of a `make run` stack (bin/gochat-dev writes it to <data-dir>/dev.json):
// the ports of logic and the gateways and the stack's secrets.
package devstate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// State is the part of dev.json the tools use.
type State struct {
	Ports struct {
		Logic   int
		Gateway []int
	} `json:"ports"`
	AdminSecret string `json:"admin_secret"`
	TokenSecret string `json:"token_secret"`
}

// Load reads dir/dev.json.
func Load(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return st, fmt.Errorf("a make run data directory: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, "dev.json"), err)
	}
	return st, nil
}

// LogicAddr is logic's Kitex address.
func (s State) LogicAddr() string { return "127.0.0.1:" + strconv.Itoa(s.Ports.Logic) }

// GatewayURL is the WebSocket URL of gateway i (0-based), without a token.
func (s State) GatewayURL(i int) string {
	return "ws://127.0.0.1:" + strconv.Itoa(s.Ports.Gateway[i]) + "/ws"
}

// GatewayURLs are the WebSocket URLs of every gateway.
func (s State) GatewayURLs() []string {
	out := make([]string, len(s.Ports.Gateway))
	for i := range out {
		out[i] = s.GatewayURL(i)
	}
	return out
}
