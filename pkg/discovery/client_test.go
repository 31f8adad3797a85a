package discovery

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestNewClientLogger checks that the etcd client logs to slog.Default()
// with lib=etcd instead of zap's own JSON on stderr. (clientv3.New does not
// wait for the endpoint, so none need be up.)
func TestNewClientLogger(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	cli, err := NewClient([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	buf.Reset()
	cli.GetLogger().Info("i")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if m["lib"] != "etcd" || m["msg"] != "i" {
		t.Errorf("got %v", m)
	}
}
