package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
)

// startLauncher runs the gochat-dev binary on dir until it reports the
// stack running, and returns the process and its children's pids.
func startLauncher(t *testing.T, dir string) (*exec.Cmd, []int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "gochat-dev"), "-bin-dir", binDir, "-data-dir", dir, "-quiet", "-ws-port", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "GoChat is running") {
				found = true
				running <- true
			}
		}
		if !found {
			running <- false
		}
	}()
	select {
	case ok := <-running:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("gochat-dev exited before the stack was running: %v", cmd.ProcessState)
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("gochat-dev: stack not running after 3 minutes")
	}
	return cmd, childrenOf(cmd.Process.Pid)
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(n); ok && st.ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids
}

type stat struct {
	state byte
	ppid  int
}

// procStat reads a process's state and parent from /proc/pid/stat.
func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return stat{state: f[0][0], ppid: ppid}, true
}

// alive reports whether pid runs (a zombie has exited).
func alive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st.state != 'Z'
}

// A launcher killed outright (no chance to stop its services) takes its
// services with it, and the same data directory starts again; a second
// launcher on a directory whose stack is still running refuses to start
// instead of reporting the other stack's services as its own.
func TestLauncherKilledTakesServicesWithIt(t *testing.T) {
	dir := t.TempDir()
	first, kids := startLauncher(t, dir)
	t.Cleanup(func() { // whatever happens below, leave nothing running
		for _, pid := range kids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if len(kids) != 4 {
		t.Fatalf("gochat-dev has %d child processes, want 4 (dataproxy, logic, gateway, task)", len(kids))
	}

	// A second launcher on the same directory while the first runs.
	second := exec.Command(filepath.Join(binDir, "gochat-dev"), "-bin-dir", binDir, "-data-dir", dir, "-quiet", "-ws-port", "0")
	msg, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "is in use") {
		t.Fatalf("a second gochat-dev on a running stack's directory: %v, output:\n%s", err, msg)
	}

	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for _, pid := range kids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("service pid %d still running 60 s after its launcher was killed", pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	st, err := stack.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{st.Ports.Logic, st.Ports.LogicAdmin, st.Ports.DataProxy, st.Ports.DataProxyAdmin, st.Ports.TaskAdmin, st.Ports.Gateway[0], st.Ports.GatewayAdmin[0]} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d still taken after the services exited: %v", port, err)
		}
		l.Close()
	}

	// The directory starts again, and stops cleanly on SIGHUP (a closed
	// terminal).
	again, kids2 := startLauncher(t, dir)
	kids = append(kids, kids2...)
	if err := again.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- again.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gochat-dev after SIGHUP: %v", err)
		}
	case <-time.After(90 * time.Second):
		_ = again.Process.Kill()
		t.Fatal("gochat-dev did not stop within 90 s of SIGHUP")
	}
	for _, pid := range kids2 {
		if alive(pid) {
			t.Fatalf("service pid %d still running after its launcher stopped", pid)
		}
	}
}
