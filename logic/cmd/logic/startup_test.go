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
const mainArgsEnv = "LOGIC_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if a, ok := os.LookupEnv(mainArgsEnv); ok {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"logic"}, args...)
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
var offline = []string{"-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1",
	"-token-secret", "t", "-admin-secret", "a", "-log-format", "json"}

// Bad settings stop logic at once, before etcd or Kafka is contacted, with
// status 2 and the reason on stderr; a failure after the logger exists
// goes through it (status 1), as in task and dataproxy.
func TestStartupErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-workers", "0"}, "logic: -workers 0: must be more than 0"},
		{[]string{"-max-inflight", "0"}, "logic: -max-inflight 0: must be more than 0"},
		{[]string{"-max-batch", "2000"}, "logic: -max-batch 2000: must be from 1 to 1000 (what dataproxy takes in one call)"},
		{[]string{"-rpc-timeout", "-1s"}, "logic: -rpc-timeout -1s: must not be negative (0 means 3s)"},
		{[]string{"-admin-secret", ""}, "logic: both -token-secret and -admin-secret are required"},
		{[]string{"-log-level", "loud"}, "logic: "},
	} {
		code, out, took := runMain(t, nil, append(append([]string{}, offline...), tc.args...)...)
		if code != 2 || !strings.HasPrefix(strings.TrimSpace(out), tc.want) || took > 10*time.Second {
			t.Errorf("%q: exit %d after %v, stderr %q; want 2 at once and %q", tc.args, code, took, out, tc.want)
		}
	}

	code, out, _ := runMain(t, nil, append(append([]string{}, offline...), "-kafka-config", "acks")...)
	var rec struct{ Level, Msg, Err, Svc string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("exit %d; stderr is not one JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "logic failed" || rec.Err != `kafka config "acks": want key=value` || rec.Svc != "logic" {
		t.Fatalf("exit %d, record %+v; want 1 and an ERROR \"logic failed\" with the reason", code, rec)
	}
}
