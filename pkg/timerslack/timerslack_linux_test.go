//go:build linux

package timerslack

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const helperEnv = "GOCHAT_TIMERSLACK_TEST_HELPER"

// TestHelperProcess is the program the other tests start: it applies the
// slack in helperEnv, makes the runtime start more threads, and prints the
// slack of every thread of the process.
func TestHelperProcess(t *testing.T) {
	v := os.Getenv(helperEnv)
	if v == "" {
		return // run only as the other tests' child process
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Println("bad duration:", err)
		os.Exit(3)
	}
	if err := Apply(d); err != nil {
		fmt.Println("apply:", err)
		os.Exit(3)
	}
	// Threads started after Apply: goroutines locked to their own threads,
	// blocked side by side.
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			<-hold
		}()
	}
	wg.Wait()
	byThread, err := Threads(os.Getpid())
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(3)
	}
	var slacks []string
	for _, d := range byThread {
		slacks = append(slacks, strconv.FormatInt(d.Nanoseconds(), 10))
	}
	fmt.Printf("threads=%d restarted_env=%q slacks=%s\n", len(byThread), os.Getenv(restartedEnv), strings.Join(slacks, ","))
	close(hold)
	os.Exit(0)
}

func runHelper(t *testing.T, slack string) (threads int, restartedEnvValue string, slacks []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+slack)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "threads=") {
			line = l
		}
	}
	var s string
	if _, err := fmt.Sscanf(line, "threads=%d restarted_env=%q slacks=%s", &threads, &restartedEnvValue, &s); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return threads, restartedEnvValue, strings.Split(s, ",")
}

// Apply restarts the program with the slack: every thread has it, those
// of the runtime started before Apply ran as well as those started later,
// and the marker of the restart is not left for the programs it starts.
func TestApplySetsEveryThread(t *testing.T) {
	own, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	want := 300 * time.Microsecond
	if own == want {
		want = 400 * time.Microsecond
	}
	threads, env, slacks := runHelper(t, want.String())
	if threads < 5 {
		t.Fatalf("only %d threads: the helper did not start its own", threads)
	}
	for _, s := range slacks {
		if n, _ := strconv.ParseInt(s, 10, 64); time.Duration(n) != want {
			t.Fatalf("thread slacks %v, want all %d", slacks, want.Nanoseconds())
		}
	}
	if env != "" {
		t.Fatalf("%s=%q left in the environment", restartedEnv, env)
	}
}

// With the slack the process already has, or none asked for, every thread
// keeps the slack it had.
func TestApplyKeepsWhatIsThere(t *testing.T) {
	own, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{own.String(), "0s"} {
		_, _, slacks := runHelper(t, d)
		for _, s := range slacks {
			if n, _ := strconv.ParseInt(s, 10, 64); time.Duration(n) != own {
				t.Fatalf("Apply(%s): thread slacks %v, want all %d as before", d, slacks, own.Nanoseconds())
			}
		}
	}
}
