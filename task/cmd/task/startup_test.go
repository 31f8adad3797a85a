package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mainArgsEnv, when set in the environment, makes the test binary run
// main with these arguments (JSON) instead of the tests.
const mainArgsEnv = "TASK_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if a, ok := os.LookupEnv(mainArgsEnv); ok {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"task"}, args...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs main in a child process, without the GOCHAT_ variables of
// the test's environment, and returns its exit status, its standard error
// and how long it took.
func runMain(t *testing.T, env []string, args ...string) (int, string, time.Duration) {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOCHAT_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, append(env, mainArgsEnv+"="+string(a))...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String(), took
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String(), took
	}
	t.Fatalf("running main: %v", err)
	return 0, "", 0
}

// Loopback addresses nothing listens on: nothing here may be contacted.
var offline = []string{"-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1", "-log-format", "json"}

// A missing word list stops task at once with status 2, not after it has
// waited for Kafka; a bad webhook URL is refused through the logger
// (status 1) before Kafka is contacted either.
func TestStartupErrors(t *testing.T) {
	code, out, took := runMain(t, nil, append(append([]string{}, offline...), "-recall-secret", "r", "-moderation-words", "/nonexistent")...)
	want := "task: -moderation-words /nonexistent: open /nonexistent: no such file or directory"
	if code != 2 || strings.TrimSpace(out) != want || took > 10*time.Second {
		t.Fatalf("exit %d after %v, stderr %q; want 2 at once and %q", code, took, out, want)
	}

	code, out, took = runMain(t, nil, append(append([]string{}, offline...), "-webhook-url", "ftp://push.example")...)
	var rec struct{ Level, Msg, Err string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("exit %d; stderr is not one JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "task service failed" || !strings.HasPrefix(rec.Err, `webhook url "ftp://push.example"`) || took > 10*time.Second {
		t.Fatalf("exit %d after %v, record %+v; want 1 at once and an ERROR naming the URL", code, took, rec)
	}
}
