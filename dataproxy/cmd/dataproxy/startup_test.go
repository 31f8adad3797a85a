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
const mainArgsEnv = "DATAPROXY_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if a, ok := os.LookupEnv(mainArgsEnv); ok {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"dataproxy"}, args...)
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

// A DSN that is not one stops dataproxy at once with status 2, instead of
// being retried until -startup-timeout.
func TestBadDSNFailsAtOnce(t *testing.T) {
	code, out, took := runMain(t, nil, "-store", "mysql", "-mysql-dsn", "not a dsn", "-startup-timeout", "1m",
		"-admin-listen", "", "-etcd", "", "-redis-addr", "127.0.0.1:1", "-listen", "127.0.0.1:0")
	want := `dataproxy: -mysql-dsn "not a dsn": invalid DSN: missing the slash separating the database name`
	if code != 2 || strings.TrimSpace(out) != want || took > 10*time.Second {
		t.Fatalf("exit %d after %v, stderr %q; want 2 at once and %q", code, took, out, want)
	}
}
