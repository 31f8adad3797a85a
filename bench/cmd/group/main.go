// Command group measures a message to a large group end to end: an app
// backend posts one message to a group through logic's Send RPC, logic
// stores it and reads the group's route set once, and the gateways push it
// to every online member. It reports the time until the first and the last
// online member had it, delivery percentiles and deliveries per second.
//
// Against a `make run` stack (more gateways spread the connections):
//
//	./bin/gochat-dev -data-dir /tmp/g -gateways 2 -quiet &
//	./bin/group -data-dir /tmp/g -members 10000 -online 10000
//	./bin/group -data-dir /tmp/g -members 100000 -online 10000
//
// Members connect with tokens signed here with the stack's token secret;
// one process holds at most ~19,000 connections (the open-file limit).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochat-im/gochat/bench/internal/devstate"
	"github.com/gochat-im/gochat/bench/internal/latency"
	"github.com/gochat-im/gochat/bench/internal/wsdial"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/auth"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

type options struct {
	dataDir, prefix, plot string
	members, online       int
	rounds, size, dialers int
	timeout, pause        time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("group", flag.ExitOnError)
	fs.StringVar(&o.dataDir, "data-dir", "./data", "data directory of a `make run` stack")
	fs.IntVar(&o.members, "members", 10000, "group members")
	fs.IntVar(&o.online, "online", 10000, "members connected while the message is sent")
	fs.IntVar(&o.rounds, "rounds", 3, "messages sent, one at a time, each measured")
	fs.IntVar(&o.size, "size", 100, "body size in bytes")
	fs.IntVar(&o.dialers, "dialers", 64, "connections opened at once")
	fs.DurationVar(&o.timeout, "round-timeout", time.Minute, "give up on a round after this long")
	fs.DurationVar(&o.pause, "pause", 2*time.Second, "pause between rounds")
	fs.StringVar(&o.prefix, "prefix", "", "user and group id prefix (default: a fresh one per run)")
	fs.StringVar(&o.plot, "plot", "group-delivery.svg", "SVG histogram of the last round's delivery times (empty: none)")
	_ = fs.Parse(os.Args[1:])
	if o.prefix == "" {
		o.prefix = "g" + strconv.FormatInt(time.Now().Unix()%1000000, 36)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "group:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.online > o.members || o.members < 2 {
		return fmt.Errorf("need 2 <= -online <= -members")
	}
	st, err := devstate.Load(o.dataDir)
	if err != nil {
		return err
	}
	opts, err := rpcx.ClientOptions(rpcx.ClientConfig{Service: rpcx.LogicService, HostPorts: []string{st.LogicAddr()},
		Caller: "bench", Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	cli, err := logicsvc.NewClient(rpcx.LogicService, opts...)
	if err != nil {
		return err
	}
	ctx := context.Background()
	uid := func(i int) string { return o.prefix + "-" + strconv.Itoa(i) }
	group := o.prefix + "-group"

	start := time.Now()
	for i := 0; i < o.members; i += 1000 {
		var us []*common.User
		for j := i; j < min(i+1000, o.members); j++ {
			us = append(us, &common.User{Uid: uid(j)})
		}
		if _, err := cli.CreateUsers(ctx, &logic.CreateUsersReq{AdminSecret: st.AdminSecret, Users: us}); err != nil {
			return fmt.Errorf("create users: %w", err)
		}
	}
	if _, err := cli.CreateGroup(ctx, &logic.CreateGroupReq{AdminSecret: st.AdminSecret, GroupId: group, Name: "bench", Owner: uid(0)}); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	for i := 1; i < o.members; i += 1000 {
		var add []string
		for j := i; j < min(i+1000, o.members); j++ {
			add = append(add, uid(j))
		}
		if _, err := cli.AddGroupMembers(ctx, &logic.GroupMembersReq{AdminSecret: st.AdminSecret, GroupId: group, Uids: add}); err != nil {
			return fmt.Errorf("add members: %w", err)
		}
	}
	fmt.Printf("group %s: %d members created in %v\n", group, o.members, time.Since(start).Round(time.Millisecond))

	// Connect the online members: members 0..online-1. Member 0 (the
	// owner) is the sender; a server-side send reaches the sender's own
	// devices too, like every other member's.
	r := &receivers{}
	start = time.Now()
	stopPings := r.keepAlive(20 * time.Second) // from the first connection on
	defer stopPings()
	err = r.connect(o, st, uid)
	defer r.close()
	if err != nil {
		return err
	}
	fmt.Printf("%d members online after %v\n", r.count(), time.Since(start).Round(time.Millisecond))

	body := strings.Repeat("x", o.size)
	fmt.Printf("\nTimes from the send call to each member's copy reaching its socket (the kernel's receive timestamp);\n")
	fmt.Printf("\"last read\" is when this tool had read the last one (its own waits for a CPU included).\n")
	fmt.Printf("\n| round | online | delivered | send RPC ms | first ms | p50 ms | p99 ms | last ms | deliveries/s | last read ms |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var last latency.Summary
	for round := 1; round <= o.rounds; round++ {
		cmid := fmt.Sprintf("%s-r%d", o.prefix, round)
		r.arm(cmid)
		t0 := time.Now()
		resp, err := cli.Send(ctx, &logic.SendReq{AdminSecret: st.AdminSecret, From: uid(0), GroupId: group, ClientMsgId: cmid, Body: body, WaitMs: 30000})
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		sent := time.Since(t0)
		deadline := time.Now().Add(o.timeout)
		for r.got.Load() < int64(len(r.conns)) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		s := r.rec.Snapshot()
		last = s
		rate := 0.0
		if s.Max() > 0 {
			rate = float64(s.Count()) / s.Max().Seconds()
		}
		fmt.Printf("| %d (seq %d) | %d | %d | %s | %s | %s | %s | %s | %.0f | %s |\n", round, resp.Seq, len(r.conns), s.Count(),
			latency.Ms(sent), latency.Ms(s.Quantile(0)), latency.Ms(s.Quantile(.5)), latency.Ms(s.Quantile(.99)), latency.Ms(s.Max()), rate,
			latency.Ms(r.readAt.Snapshot().Max()))
		time.Sleep(o.pause)
	}
	if o.plot != "" {
		f, err := os.Create(o.plot)
		if err != nil {
			return err
		}
		defer f.Close()
		return last.SVG(f, fmt.Sprintf("GoChat: one message to a %d-member group, %d online (time to each member)", o.members, o.online))
	}
	return nil
}

// receivers are the online members' connections.
type receivers struct {
	cmu   sync.Mutex // guards conns while connecting
	conns []*wsdial.Conn

	mu   sync.Mutex
	cmid string
	t0   time.Time
	got  atomic.Int64
	// rec times each member's copy to its arrival at the member's socket
	// (the kernel's receive timestamp; see wsdial.Conn.Arrival); readAt to
	// when this process read it, which adds its own waits for a CPU (one
	// process reads thousands of connections on a box it shares with the
	// servers).
	rec, readAt latency.Recorder
}

func (r *receivers) connect(o options, st devstate.State, uid func(int) string) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range o.dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.online {
					return
				}
				c, err := dialMember(st, uid(i), i)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				} else {
					r.cmu.Lock()
					r.conns = append(r.conns, c)
					r.cmu.Unlock()
				}
				if err == nil {
					go r.read(c)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { // progress
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				n := len(errs)
				mu.Unlock()
				fmt.Printf("  connecting: %d/%d online, %d failed\n", r.count(), o.online, n)
			}
		}
	}()
	wg.Wait()
	close(done)
	if len(errs) > 0 {
		return fmt.Errorf("%d connections failed, first: %w", len(errs), errs[0])
	}
	return nil
}

func dialMember(st devstate.State, uid string, i int) (*wsdial.Conn, error) {
	tok, err := auth.Sign([]byte(st.TokenSecret), auth.Claims{UID: uid, Device: "bench", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		return nil, err
	}
	url := st.GatewayURL(i%len(st.Ports.Gateway)) + "?token=" + tok
	return wsdial.Hello(context.Background(), url, 30*time.Second)
}

// arm starts a round: arrivals of the message with cmid are timed from now.
func (r *receivers) arm(cmid string) {
	r.mu.Lock()
	r.cmid, r.t0 = cmid, time.Now()
	r.mu.Unlock()
	r.got.Store(0)
	r.rec.Reset()
	r.readAt.Reset()
}

func (r *receivers) read(c *wsdial.Conn) {
	for {
		data, err := c.ReadMessage()
		if err != nil {
			return
		}
		r.mu.Lock()
		cmid, t0 := r.cmid, r.t0
		r.mu.Unlock()
		if cmid != "" && strings.Contains(string(data), `"cmid":"`+cmid+`"`) {
			now := time.Now()
			r.rec.Add(c.ArrivalOr(now).Sub(t0))
			r.readAt.Add(now.Sub(t0))
			r.got.Add(1)
		}
	}
}

// keepAlive sends each connection a JSON ping every d (the gateway closes
// silent connections), from one goroutine, the only writer after the dial.
func (r *receivers) keepAlive(d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, c := range r.snapshot() {
					_ = c.WriteText([]byte(`{"type":"ping"}`))
				}
			}
		}
	}()
	return func() { close(done) }
}

// snapshot returns the connections open so far.
func (r *receivers) snapshot() []*wsdial.Conn {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	return r.conns[:len(r.conns):len(r.conns)]
}

func (r *receivers) count() int { return len(r.snapshot()) }

func (r *receivers) close() {
	for _, c := range r.snapshot() {
		c.Close()
	}
}
