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
const mainArgsEnv = "GATEWAY_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if a, ok := os.LookupEnv(mainArgsEnv); ok {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"gateway"}, args...)
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

// A start-up failure goes through the structured logger, like task's and
// dataproxy's, with status 1; only a logger that cannot be built, or a bad
// setting found while parsing, is plain text on stderr with status 2.
func TestStartupErrors(t *testing.T) {
	// No token secret: refused by app.New before anything is contacted.
	code, out, _ := runMain(t, nil, "-log-format", "json", "-admin-listen", "", "-etcd", "127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1")
	var rec struct{ Level, Msg, Err, Svc string }
	if err := json.Unmarshal([]byte(lastLine(out)), &rec); err != nil {
		t.Fatalf("exit %d; the last line of stderr is not a JSON log record: %v\n%s", code, err, out)
	}
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "gateway failed" || rec.Svc != "gateway" ||
		rec.Err != "no token secret: set -token-secret or GOCHAT_TOKEN_SECRET" {
		t.Fatalf("exit %d, record %+v; want 1 and an ERROR \"gateway failed\" naming the missing secret\n%s", code, rec, out)
	}

	code, out, _ = runMain(t, nil, "-log-format", "yaml", "-token-secret", "s")
	if code != 2 || !strings.HasPrefix(out, "gateway: ") {
		t.Fatalf("bad -log-format: exit %d, stderr %q; want 2 and a plain \"gateway: ...\"", code, out)
	}

	code, out, _ = runMain(t, []string{"GOCHAT_HEARTBEAT=x"}, "-token-secret", "s")
	want := `environment GOCHAT_HEARTBEAT (-heartbeat): invalid value "x": want a duration such as 300ms, 30s or 1m30s (time: invalid duration "x")`
	if code != 2 || strings.TrimSpace(out) != want {
		t.Fatalf("bad GOCHAT_HEARTBEAT: exit %d, stderr %q; want 2 and %q", code, out, want)
	}
}

// lastLine is the last line of s (the gateway logs its open-file limit
// before it fails).
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
