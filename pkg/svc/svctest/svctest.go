// Package svctest runs a service's main function in a child process, for
// tests of how a service binary starts and fails (exit status, what it
// writes to stderr) without building it: the test binary runs itself with
// the arguments in an environment variable, and its TestMain calls main.
package svctest

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

// argsEnv, when set, holds the JSON arguments a child runs main with.
const argsEnv = "SVCTEST_MAIN_ARGS"

// MainIfChild runs main as the program prog, with the arguments RunMain
// passed, and exits, if this process is such a child; otherwise it
// returns. Call it first in TestMain.
func MainIfChild(prog string, main func()) {
	a, ok := os.LookupEnv(argsEnv)
	if !ok {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(a), &args); err != nil {
		panic(err)
	}
	os.Args = append([]string{prog}, args...)
	main()
	os.Exit(0)
}

// RunMain runs main (see MainIfChild) in a child process with args and
// env added to the test's environment, less its GOCHAT_ variables, and
// returns the exit status, the standard error and how long it took (at
// most 30 s).
func RunMain(t testing.TB, env []string, args ...string) (int, string, time.Duration) {
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
	cmd.Env = append(cmd.Env, append(env, argsEnv+"="+string(a))...)
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
