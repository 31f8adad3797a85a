package stack

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one supervised child process.
type proc struct {
	name, bin, path string
	args, env       []string
	admin           int
	out             io.Writer
	log             *slog.Logger

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	halted bool // stop was called: do not restart
}

func (p *proc) start() error {
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Its own process group, so a Ctrl-C in the terminal reaches only the
	// launcher, which then stops the children in order. If the launcher
	// dies without stopping them (SIGKILL, a crash), the kernel sends each
	// child SIGTERM, so no orphan keeps the stack's ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// wait blocks until the current incarnation exits.
func (p *proc) wait() error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *proc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (p *proc) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.halted
}

func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return errNotRunning
	}
	return p.cmd.Process.Signal(sig)
}

// stop sends SIGTERM and, if the process is still running after grace,
// SIGKILL. It only ever signals the PID it started.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	p.halted = true
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.log.Warn("service did not stop in time; killing", "svc", p.name)
		_ = p.signal(syscall.SIGKILL)
		<-done
	}
}

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		line := append(append([]byte{}, pw.prefix...), pw.buf[:i+1]...)
		if _, err := pw.w.Write(line); err != nil {
			return len(b), err
		}
		pw.buf = pw.buf[i+1:]
	}
	return len(b), nil
}
