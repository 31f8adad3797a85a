//go:build linux

package timerslack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// prctl options (linux/prctl.h).
const (
	prSetTimerslack = 29
	prGetTimerslack = 30
)

// restartedEnv marks the process that Apply started: if it still lacks the
// slack, Apply reports it instead of restarting again.
const restartedEnv = "GOCHAT_TIMER_SLACK_RESTARTED"

func current() (time.Duration, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerslack, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("timer slack: %w", e)
	}
	return time.Duration(r), nil
}

func threads(pid int) (map[int]time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("timer slack: %w", err)
	}
	out := make(map[int]time.Duration, len(tasks))
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread's own file is /proc/<tid>/timerslack_ns (task
		// directories have none).
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread has exited
		}
		if err != nil {
			return nil, fmt.Errorf("timer slack: %w", err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("timer slack of thread %d: %w", tid, err)
		}
		out[tid] = time.Duration(ns)
	}
	return out, nil
}

func apply(d time.Duration) error {
	// Every Go thread was started by one that had the program's slack, so
	// this thread's slack is everyone's.
	cur, err := current()
	if err != nil {
		return err
	}
	restarted := os.Getenv(restartedEnv) != ""
	_ = os.Unsetenv(restartedEnv) // not for the programs this one starts
	if cur == d {
		return nil
	}
	if restarted {
		return fmt.Errorf("timer slack is %v after restarting to set %v", cur, d)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	// The thread that calls exec becomes the new program's main thread and
	// keeps its slack; the runtime starts all others from it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, uintptr(d.Nanoseconds()), 0); e != 0 {
		return fmt.Errorf("timer slack: set %v: %w", d, e)
	}
	env := append(os.Environ(), restartedEnv+"=1")
	err = syscall.Exec(exe, os.Args, env)
	return fmt.Errorf("timer slack: restart %s: %w", exe, err)
}
