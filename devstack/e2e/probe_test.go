package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gochat-im/gochat/devstack/internal/stack"
)

// TestProbe: each service binary run with -probe asks its own service's
// /readyz (the container health check in docker-compose.yml), needs
// nothing else of the service's settings (logic's secrets are not given),
// and fails when nothing answers.
func TestProbe(t *testing.T) {
	e := startStack(t, stack.Config{})
	p := e.st.State().Ports
	probe := func(bin string, port int) (int, string) {
		cmd := exec.Command(filepath.Join(binDir, bin), "-probe", "-admin-listen", "0.0.0.0:"+strconv.Itoa(port))
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOCHAT_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatalf("%s -probe: %v", bin, err)
		}
		return 0, string(out)
	}
	for _, s := range []struct {
		bin  string
		port int
	}{{"dataproxy", p.DataProxyAdmin}, {"logic", p.LogicAdmin}, {"gateway", p.GatewayAdmin[0]}, {"task", p.TaskAdmin}} {
		if code, out := probe(s.bin, s.port); code != 0 || !strings.Contains(out, "200 OK") {
			t.Errorf("%s -probe of a running service: status %d, output %q", s.bin, code, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if code, out := probe("logic", free); code != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("logic -probe with nothing listening: status %d, output %q", code, out)
	}
}
