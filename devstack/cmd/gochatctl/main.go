// Command gochatctl is a command-line client for operators and app
// developers: it issues client tokens and creates users through logic's
// Kitex API, and can chat through a gateway like any client app.
//
//	gochatctl token [-device web] [-ttl 24h] <uid>
//	gochatctl users add <uid>...
//	gochatctl send <from> <to> <text>
//	gochatctl listen <uid>
//	gochatctl history <uid> <peer>
//	gochatctl recall <conv> <seq> <reason>
//
// It finds logic through etcd (-etcd) or at a fixed address (-logic) and
// authenticates with the admin secret (-admin-secret or
// GOCHAT_ADMIN_SECRET). Against a `make run` stack, -data-dir supplies
// both from the stack's state file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gochat-im/gochat/devstack/internal/stack"
	"github.com/gochat-im/gochat/idl/kitex_gen/common"
	"github.com/gochat-im/gochat/idl/kitex_gen/logic"
	logicsvc "github.com/gochat-im/gochat/idl/kitex_gen/logic/logic"
	"github.com/gochat-im/gochat/pkg/config"
	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/rpcx"
)

const usage = `usage: gochatctl [flags] <command>

commands:
  token [-device ID] [-ttl DURATION] [-no-create] <uid>   print a client token
  users add <uid>...                                      create users
  send <from> <to> <text>      send a message as <from> and wait for the ack
  listen <uid>                 print <uid>'s incoming messages; "@user text" sends
  history <uid> <peer>         print the one-to-one conversation of <uid> and <peer>
  recall <conv> <seq> <reason> take back any message as the operator (moderation, abuse
                               reports); its conversation shows the reason instead

The chat commands issue a token for device "cli" and connect to -ws.

flags:
`

func main() {
	fs := flag.NewFlagSet("gochatctl", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	dataDir := fs.String("data-dir", "", "data directory of a make run stack (supplies logic's address and the admin secret)")
	etcd := fs.String("etcd", "127.0.0.1:2379", "etcd endpoints used to find logic")
	logicAddr := fs.String("logic", "", "logic's host:port (skips etcd)")
	secret := fs.String("admin-secret", os.Getenv("GOCHAT_ADMIN_SECRET"), "admin secret (default $GOCHAT_ADMIN_SECRET)")
	wsURL := fs.String("ws", "", "gateway WebSocket URL for the chat commands (default: from -data-dir, else ws://127.0.0.1:8080/ws)")
	fs.BoolVar(&useMsgpack, "msgpack", false, "chat commands speak MessagePack (subprotocol gochat.msgpack) instead of JSON")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	if *dataDir != "" {
		st, err := stack.LoadState(*dataDir)
		if err != nil {
			fail(err)
		}
		if *secret == "" {
			*secret = st.AdminSecret
		}
		if *logicAddr == "" && st.Ports.Logic != 0 {
			*logicAddr = "127.0.0.1:" + strconv.Itoa(st.Ports.Logic)
		}
		if *wsURL == "" && len(st.Ports.Gateway) > 0 {
			*wsURL = "ws://127.0.0.1:" + strconv.Itoa(st.Ports.Gateway[0]) + "/ws"
		}
	}
	cc := rpcx.ClientConfig{Service: rpcx.LogicService, Etcd: config.List(*etcd), Caller: "gochatctl", Timeout: 10 * time.Second}
	if *logicAddr != "" {
		cc.HostPorts = []string{*logicAddr}
	}
	opts, err := rpcx.ClientOptions(cc)
	if err != nil {
		fail(err)
	}
	cli, err := logicsvc.NewClient(rpcx.LogicService, opts...)
	if err != nil {
		fail(err)
	}
	if *wsURL == "" {
		*wsURL = "ws://127.0.0.1:8080/ws"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	token := func(uid string) string {
		resp, err := cli.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: *secret, Uid: uid, Device: "cli", CreateUser: true})
		if err != nil {
			fail(err)
		}
		return resp.Token
	}
	args := fs.Args()
	need := func(n int) {
		if len(args) != n+1 {
			fs.Usage()
			os.Exit(2)
		}
	}
	switch args[0] {
	case "send":
		need(3)
		err = cmdSend(ctx, *wsURL, token(args[1]), args[2], args[3])
	case "listen":
		need(1)
		lctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = cmdListen(lctx, *wsURL, token(args[1]))
		stop()
	case "history":
		need(2)
		err = cmdHistory(ctx, *wsURL, token(args[1]), args[1], args[2])
	case "token":
		tfs := flag.NewFlagSet("token", flag.ExitOnError)
		device := tfs.String("device", "web", "device id the token is for")
		ttl := tfs.Duration("ttl", 0, "token lifetime (0: the server default)")
		noCreate := tfs.Bool("no-create", false, "fail if the user does not exist instead of creating it")
		_ = tfs.Parse(args[1:])
		if tfs.NArg() != 1 {
			fail(fmt.Errorf("token needs exactly one uid"))
		}
		resp, err := cli.IssueToken(ctx, &logic.IssueTokenReq{AdminSecret: *secret, Uid: tfs.Arg(0), Device: *device,
			TtlSeconds: int64(*ttl / time.Second), CreateUser: !*noCreate})
		if err != nil {
			fail(err)
		}
		fmt.Println(resp.Token)
	case "recall":
		need(3)
		seq, perr := strconv.ParseInt(args[2], 10, 64)
		if perr != nil {
			fail(fmt.Errorf("seq %q: %w", args[2], perr))
		}
		resp, err := cli.Recall(ctx, &logic.RecallReq{AdminSecret: *secret, ConvId: args[1], Seq: seq, Reason: args[3]})
		if err != nil {
			fail(err)
		}
		switch {
		case resp.AlreadyRecalled:
			fmt.Printf("%s #%d was recalled by its sender already\n", args[1], seq)
		case resp.Duplicate:
			fmt.Printf("%s #%d was recalled before, by event #%d\n", args[1], seq, resp.Seq)
		default:
			fmt.Printf("%s #%d recalled: event #%d\n", args[1], seq, resp.Seq)
		}
	case "users":
		if len(args) < 3 || args[1] != "add" {
			fail(fmt.Errorf("usage: users add <uid>..."))
		}
		var us []*common.User
		for _, u := range args[2:] {
			us = append(us, &common.User{Uid: u})
		}
		resp, err := cli.CreateUsers(ctx, &logic.CreateUsersReq{AdminSecret: *secret, Users: us})
		if err != nil {
			fail(err)
		}
		fmt.Printf("created %d of %d users\n", resp.Created, len(us))
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	if c, msg := errcode.Of(err); c != 0 && c != errcode.Unavailable {
		fmt.Fprintf(os.Stderr, "gochatctl: %s (%d): %s\n", c, int32(c), msg)
	} else {
		fmt.Fprintln(os.Stderr, "gochatctl:", err)
	}
	os.Exit(1)
}
