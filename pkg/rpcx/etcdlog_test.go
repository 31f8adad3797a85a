package rpcx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	etcdreg "github.com/kitex-contrib/registry-etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdLogger checks that registry-etcd's etcd client gets a logger
// writing to slog.Default() with lib=etcd.
func TestEtcdLogger(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	cfg := &etcdreg.Config{EtcdConfig: &clientv3.Config{}}
	etcdLogger()(cfg)
	if cfg.EtcdConfig.Logger == nil {
		t.Fatal("no logger set")
	}
	cfg.EtcdConfig.Logger.Warn("w")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if m["lib"] != "etcd" || m["msg"] != "w" || m["level"] != "WARN" {
		t.Errorf("got %v", m)
	}
}
