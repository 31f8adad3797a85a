// Command group measures a message to a large group end to end: an app
// backend posts one message to a group through logic's Send RPC, logic
// stores it and reads the group's route set once, and the gateways push it
// to every online member. It reports the time until the first and the last
// online member had it, delivery percentiles, deliveries per second from
// the send call and the fan-out rate from the first arrival to the last.
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
	"slices"
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
	"github.com/gochat-im/gochat/pkg/ids"
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
	fs.StringVar(&o.dataDir, "data-dir", "./data", "data directory of the stack (`dir` of make run or gochat-dev -data-dir)")
	fs.IntVar(&o.members, "members", 10000, "group members")
	fs.IntVar(&o.online, "online", 10000, "members connected while the message is sent")
	fs.IntVar(&o.rounds, "rounds", 3, "messages sent, one at a time, each measured")
	fs.IntVar(&o.size, "size", 100, "body size in bytes")
	fs.IntVar(&o.dialers, "dialers", 64, "connections opened at once")
	fs.DurationVar(&o.timeout, "round-timeout", time.Minute, "give up on a round after this long")
	fs.DurationVar(&o.pause, "pause", 2*time.Second, "pause between rounds")
	fs.StringVar(&o.prefix, "prefix", "", "user and group id prefix (default: a fresh one per run, from the time in nanoseconds)")
	fs.StringVar(&o.plot, "plot", "group-delivery.svg", "SVG histogram of the last round's delivery times (empty: none)")
	_ = fs.Parse(os.Args[1:])
	if o.prefix == "" {
		o.prefix = freshPrefix(time.Now())
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "group:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "group:", err)
		os.Exit(1)
	}
}

// freshPrefix returns a user and group id prefix for a run started at t:
// the time in nanoseconds, so runs never share their users and group.
func freshPrefix(t time.Time) string { return "g" + strconv.FormatInt(t.UnixNano(), 36) }

func (o options) uid(i int) string { return o.prefix + "-" + strconv.Itoa(i) }
func (o options) group() string    { return o.prefix + "-group" }

// validate checks the flags' values.
func (o options) validate() error {
	switch {
	case o.members < 2:
		return fmt.Errorf("-members must be at least 2, not %d", o.members)
	case o.online < 1 || o.online > o.members:
		return fmt.Errorf("-online must be 1 to -members (%d), not %d", o.members, o.online)
	case o.rounds < 1:
		return fmt.Errorf("-rounds must be at least 1, not %d", o.rounds)
	case o.size < 1:
		return fmt.Errorf("-size must be at least 1 byte, not %d", o.size)
	case o.dialers < 1:
		return fmt.Errorf("-dialers must be at least 1, not %d", o.dialers)
	case o.timeout <= 0:
		return fmt.Errorf("-round-timeout must be positive, not %v", o.timeout)
	case o.pause < 0:
		return fmt.Errorf("-pause must not be negative, not %v", o.pause)
	case !ids.ValidUID(o.uid(o.members-1)) || !ids.ValidUID(o.group()):
		return fmt.Errorf("-prefix %q: user and group ids (such as %q) must be 1-%d bytes of [A-Za-z0-9_.@-]", o.prefix, o.group(), ids.MaxIDLen)
	}
	return nil
}

func run(o options) error {
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
	uid, group := o.uid, o.group()

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
	r := &receivers{quiet: min(o.timeout, 30*time.Second)}
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
	printLegend()
	var (
		last     latency.Summary
		warnings []string
	)
	for round := 1; round <= o.rounds; round++ {
		cmid := fmt.Sprintf("%s-r%d", o.prefix, round)
		want := r.arm(int64(round), cmid)
		t0 := time.Now()
		resp, err := cli.Send(ctx, &logic.SendReq{AdminSecret: st.AdminSecret, From: uid(0), GroupId: group, ClientMsgId: cmid, Body: body, WaitMs: 30000})
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		sent := time.Since(t0)
		deadline := time.Now().Add(o.timeout)
		for !r.complete() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		rs := r.end()
		rs.n, rs.seq, rs.online, rs.send = round, resp.Seq, want, sent
		last = rs.arrivals
		fmt.Println(rs.row())
		warnings = append(warnings, rs.warnings(o.timeout)...)
		if round < o.rounds {
			time.Sleep(o.pause)
		}
	}
	closed, notes := r.closedTotal()
	for _, w := range append(warnings, notes...) {
		fmt.Printf("\n%s\n", w)
	}
	if closed > 0 {
		fmt.Printf("\n%d member connection(s) closed during the run\n", closed)
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
	conns []*member

	// quiet is the longest time a round goes without keepalives;
	// quietUntil ends the current round's (Unix nanoseconds, 0: none).
	quiet      time.Duration
	quietUntil atomic.Int64
	closing    atomic.Bool

	mu     sync.Mutex
	round  int64 // the current round, 0 before the first
	active bool  // a round is being measured
	cmid   string
	t0     time.Time
	want   int      // connections open when the round started
	closed int      // connections closed so far
	lost   int      // connections closed in the round before its copy came
	notes  []string // the first closed connections, described
	got    atomic.Int64
	dups   atomic.Int64
	// rec times each member's copy to its arrival at the member's socket
	// (the kernel's receive timestamp; see wsdial.Conn.Arrival); readAt to
	// when this process read it, which adds its own waits for a CPU (one
	// process reads thousands of connections on a box it shares with the
	// servers).
	rec, readAt latency.Recorder
}

// member is one online member's connection.
type member struct {
	c   *wsdial.Conn
	uid string
	// got is the last round whose message the member received; only its
	// reading goroutine uses it (in receive and lostConn).
	got int64
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
					continue
				}
				m := &member{c: c, uid: uid(i)}
				r.cmu.Lock()
				r.conns = append(r.conns, m)
				r.cmu.Unlock()
				go r.read(m)
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

// arm starts round n: arrivals of the message with cmid are timed from
// now, and keepalives pause. It returns the connections open, each of
// which should get the message.
func (r *receivers) arm(n int64, cmid string) int {
	r.got.Store(0)
	r.dups.Store(0)
	r.rec.Reset()
	r.readAt.Reset()
	if r.quiet > 0 {
		r.quietUntil.Store(time.Now().Add(r.quiet).UnixNano())
	}
	opened := r.count()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.round, r.active, r.cmid, r.t0 = n, true, cmid, time.Now()
	r.want = opened - r.closed
	r.lost = 0
	return r.want
}

// complete reports whether every connection open at the round's start has
// the message or has closed.
func (r *receivers) complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int(r.got.Load())+r.lost >= r.want
}

// end ends the round and returns its figures.
func (r *receivers) end() roundResult {
	r.quietUntil.Store(0)
	r.mu.Lock()
	r.active = false
	lost := r.lost
	r.mu.Unlock()
	s := r.rec.Snapshot()
	return roundResult{arrivals: s, delivered: s.Count(), dups: r.dups.Load(), lost: lost, lastRead: r.readAt.Snapshot().Max()}
}

func (r *receivers) read(m *member) {
	for {
		data, err := m.c.ReadMessage()
		if err != nil {
			r.lostConn(m, err)
			return
		}
		now := time.Now()
		r.receive(m, data, m.c.ArrivalOr(now), now)
	}
}

// receive handles a message m read at now, which had reached its socket
// at arrival: it times the round's message, the first copy only.
func (r *receivers) receive(m *member, data []byte, arrival, now time.Time) {
	r.mu.Lock()
	round, cmid, t0, active := r.round, r.cmid, r.t0, r.active
	r.mu.Unlock()
	if !active || !strings.Contains(string(data), `"cmid":"`+cmid+`"`) {
		return
	}
	if m.got == round {
		r.dups.Add(1)
		return
	}
	m.got = round
	r.rec.Add(arrival.Sub(t0))
	r.readAt.Add(now.Sub(t0))
	r.got.Add(1)
}

// lostConn counts a member's connection that closed; in a round without
// the round's message, it is not waited for. The first few are described
// in notes, printed after the table.
func (r *receivers) lostConn(m *member, err error) {
	if r.closing.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	during := r.active && m.got != r.round
	if during {
		r.lost++
	}
	switch {
	case len(r.notes) > 5:
	case len(r.notes) == 5:
		r.notes = append(r.notes, "warning: more connections closed: counted, not described")
	case during:
		r.notes = append(r.notes, fmt.Sprintf("warning: %s's connection closed during round %d before the message came (%v); not waited for, counted as not delivered", m.uid, r.round, err))
	default:
		r.notes = append(r.notes, fmt.Sprintf("warning: %s's connection closed after round %d (%v); it misses the rounds after", m.uid, r.round, err))
	}
}

// closedTotal returns the number of connections closed so far, and the
// descriptions of the first few.
func (r *receivers) closedTotal() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed, slices.Clone(r.notes)
}

// keepAlive sends each connection a JSON ping every d (the gateway closes
// silent connections), from one goroutine, the only writer after the dial.
// It skips the pings due during a round, up to r.quiet into it, so they
// do not compete with the message's pushes.
func (r *receivers) keepAlive(d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.UnixNano() < r.quietUntil.Load() {
					continue // no writes while a round is measured
				}
				for _, m := range r.snapshot() {
					_ = m.c.WriteText([]byte(`{"type":"ping"}`))
				}
			}
		}
	}()
	return func() { close(done) }
}

// snapshot returns the connections opened so far.
func (r *receivers) snapshot() []*member {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	return r.conns[:len(r.conns):len(r.conns)]
}

func (r *receivers) count() int { return len(r.snapshot()) }

func (r *receivers) close() {
	r.closing.Store(true)
	for _, m := range r.snapshot() {
		m.c.Close()
	}
}
