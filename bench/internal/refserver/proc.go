//go:build linux

package refserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// Proc is the parent's handle on one reference server child.
type Proc struct {
	Addr string
	PID  int

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan reply
	exit    chan struct{}
}

// Start starts k reference servers, children running this executable,
// each listening on cfg.Listen (give port 0). It returns when all listen.
func Start(k int, cfg Config) ([]*Proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var out []*Proc
	for i := 0; i < k; i++ {
		p, err := start(exe, cfg)
		if err != nil {
			Stop(out)
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func start(exe string, cfg Config) (*Proc, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), Env+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start reference server: %w", err)
	}
	p := &Proc{cmd: cmd, stdin: in, replies: make(chan reply, 4), exit: make(chan struct{}), PID: cmd.Process.Pid}
	go func() {
		sc := bufio.NewScanner(outPipe)
		for sc.Scan() {
			var r reply
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				p.replies <- r
			}
		}
		_ = cmd.Wait()
		close(p.exit)
	}()
	b, _ := json.Marshal(cfg)
	if _, err := in.Write(append(b, '\n')); err != nil {
		_ = cmd.Process.Kill()
		<-p.exit
		return nil, fmt.Errorf("send config: %w", err)
	}
	select {
	case r := <-p.replies:
		if r.Addr == "" {
			p.kill()
			return nil, fmt.Errorf("reference server: %s", r.Err)
		}
		p.Addr = r.Addr
	case <-p.exit:
		return nil, errors.New("reference server exited at start")
	case <-time.After(10 * time.Second):
		p.kill()
		return nil, errors.New("reference server did not start")
	}
	return p, nil
}

func (p *Proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exit
}

// Push asks the server to write frame to every connection it holds. It
// does not wait; Done returns the answer.
func (p *Proc) Push(frame []byte) error {
	b, _ := json.Marshal(command{Frame: frame})
	_, err := p.stdin.Write(append(b, '\n'))
	return err
}

// Done waits up to timeout for the answer to the last Push: how many
// connections took the frame and how long the writes took.
func (p *Proc) Done(timeout time.Duration) (pushed int, took time.Duration, err error) {
	select {
	case r := <-p.replies:
		if r.Err != "" {
			return 0, 0, errors.New(r.Err)
		}
		return r.Pushed, time.Duration(r.NS), nil
	case <-p.exit:
		return 0, 0, errors.New("reference server exited")
	case <-time.After(timeout):
		return 0, 0, errors.New("reference server did not answer")
	}
}

// Stop closes the servers' stdin and waits up to 10 s for each to exit,
// then kills it.
func Stop(ps []*Proc) {
	for _, p := range ps {
		_ = p.stdin.Close()
	}
	deadline := time.After(10 * time.Second)
	for _, p := range ps {
		select {
		case <-p.exit:
		case <-deadline:
			p.kill()
		}
	}
}
