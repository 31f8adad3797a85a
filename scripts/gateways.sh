#!/usr/bin/env bash
# Starts K gateway processes on this machine for load tests, each with its
# own id, WebSocket port, admin port and downstream topic (gochat.down.<id>),
# and stops exactly the processes it started, by PID.
#
#   scripts/gateways.sh start [options] [-- extra gateway flags]
#   scripts/gateways.sh status [-dir DIR]
#   scripts/gateways.sh stop [-dir DIR]
#
# start options:
#   -n K            gateways to start (default 1)
#   -dir DIR        run directory: pids, logs, gateways.txt, token-secret
#                   (default /tmp/gochat-gateways)
#   -host H         address to listen on (default 127.0.0.1)
#   -port P         WebSocket port of the first gateway; the i-th gets P+i-1
#                   (default 9100)
#   -admin-port P   admin port of the first gateway (default 9400)
#   -id-prefix S    gateway ids S1 .. SK (default bgw)
#   -standalone     run the gateways with -standalone: routes are accepted
#                   without the logic service (benchmarks of the gateway alone)
#   -stack DIR      use the running embedded stack whose data directory is DIR
#                   (started with bin/gochat-dev -data-dir DIR): its etcd, Kafka
#                   and token secret
#   -etcd E -kafka B  use an existing deployment; the token secret comes from
#                   $GOCHAT_TOKEN_SECRET
#   -bin DIR        directory with the gateway and gochat-dev binaries (default ./bin)
# Without -stack or -etcd, start embedded infrastructure: bin/gochat-dev with
# its data in DIR/stack (it also runs logic, task, dataproxy and one gateway).
#
# gateways.txt lists "id ws-host:port admin-host:port pid" per gateway; the
# bench tools read it (conns/push -gateways DIR/gateways.txt
# -token-secret-file DIR/token-secret).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
[ -n "$cmd" ] && shift || true

n=1 dir=/tmp/gochat-gateways host=127.0.0.1 port=9100 admin=9400 prefix=bgw
standalone=0 stack="" etcd="" kafka="" bin="$here/bin" extra=()
while [ $# -gt 0 ]; do
	case $1 in
	-n) n=$2; shift 2 ;;
	-dir) dir=$2; shift 2 ;;
	-host) host=$2; shift 2 ;;
	-port) port=$2; shift 2 ;;
	-admin-port) admin=$2; shift 2 ;;
	-id-prefix) prefix=$2; shift 2 ;;
	-standalone) standalone=1; shift ;;
	-stack) stack=$2; shift 2 ;;
	-etcd) etcd=$2; shift 2 ;;
	-kafka) kafka=$2; shift 2 ;;
	-bin) bin=$2; shift 2 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "gateways.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

die() { echo "gateways.sh: $*" >&2; exit 1; }

# alive PID NAME: the process exists and runs the binary NAME (guards
# against a recycled pid).
alive() {
	[ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

# running PID: the process still exists. The start-up loops use this rather
# than alive: a service given -timer-slack restarts itself in place with
# exec at start-up, and its command line can read as empty meanwhile.
running() {
	kill -0 "$1" 2>/dev/null
}

# stop_pid FILE NAME: SIGTERM the process recorded in FILE, wait up to 25 s,
# then SIGKILL; remove FILE.
stop_pid() {
	local f=$1 name=$2 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if alive "$pid" "$name"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 250); do
			alive "$pid" "$name" || break
			sleep 0.1
		done
		if alive "$pid" "$name"; then
			echo "gateways.sh: $name pid $pid did not stop; killing" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

wait_ready() { # wait_ready ADMIN-ADDR PID
	for _ in $(seq 900); do
		if curl -fsS -o /dev/null "http://$1/readyz" 2>/dev/null; then return 0; fi
		running "$2" || return 1
		sleep 0.1
	done
	return 1
}

do_stop() {
	[ -d "$dir/pids" ] || { echo "gateways.sh: nothing started in $dir"; return 0; }
	for f in "$dir"/pids/*.pid; do
		[ -e "$f" ] || continue
		case $(basename "$f") in
		stack.pid) ;;
		*) stop_pid "$f" "$bin/gateway" ;;
		esac
	done
	stop_pid "$dir/pids/stack.pid" "$bin/gochat-dev"
	rm -f "$dir/gateways.txt"
	echo "gateways.sh: stopped what was started in $dir"
}

do_status() {
	[ -f "$dir/gateways.txt" ] || { echo "no gateways in $dir"; return 0; }
	while read -r id ws adm pid; do
		case $id in '#'*|'') continue ;; esac
		if alive "$pid" "$bin/gateway"; then
			rss=$(awk '/VmRSS/ {print $2" "$3}' "/proc/$pid/status")
			echo "$id $ws admin $adm pid $pid RSS $rss"
		else
			echo "$id $ws pid $pid NOT RUNNING"
		fi
	done <"$dir/gateways.txt"
}

do_start() {
	[ -x "$bin/gateway" ] || die "no $bin/gateway; run make build"
	mkdir -p "$dir/pids" "$dir/logs"
	if [ -f "$dir/gateways.txt" ]; then
		die "$dir already has running gateways; stop them first (scripts/gateways.sh stop -dir $dir)"
	fi
	local secret
	if [ -z "$stack" ] && [ -z "$etcd" ]; then
		[ -x "$bin/gochat-dev" ] || die "no $bin/gochat-dev; run make build"
		stack="$dir/stack"
		mkdir -p "$stack"
		echo "starting embedded infrastructure (gochat-dev, data in $stack)"
		nohup "$bin/gochat-dev" -data-dir "$stack" -ws-port 0 -quiet >"$dir/logs/stack.log" 2>&1 &
		echo $! >"$dir/pids/stack.pid"
		local spid=$! ok=0
		for _ in $(seq 1800); do
			if grep -q "GoChat is running" "$dir/logs/stack.log" 2>/dev/null; then ok=1; break; fi
			running "$spid" || break
			sleep 0.1
		done
		[ $ok = 1 ] || { tail -20 "$dir/logs/stack.log" >&2; die "embedded stack did not start"; }
	fi
	if [ -n "$stack" ]; then
		[ -f "$stack/dev.json" ] || die "$stack/dev.json not found: is gochat-dev running with -data-dir $stack?"
		etcd="$host:$(jq -r .ports.Etcd "$stack/dev.json")"
		kafka="$host:$(jq -r .ports.Kafka "$stack/dev.json")"
		secret=$(jq -r .token_secret "$stack/dev.json")
	else
		[ -n "$kafka" ] || die "-etcd needs -kafka"
		secret=${GOCHAT_TOKEN_SECRET:-}
		[ -n "$secret" ] || die "set GOCHAT_TOKEN_SECRET to the deployment's token secret"
	fi
	(umask 077; printf '%s\n' "$secret" >"$dir/token-secret")
	local flags=()
	[ $standalone = 1 ] && flags+=(-standalone)
	: >"$dir/gateways.txt.tmp"
	for i in $(seq "$n"); do
		local id="$prefix$i" ws="$host:$((port + i - 1))" adm="$host:$((admin + i - 1))"
		GOCHAT_TOKEN_SECRET=$secret nohup "$bin/gateway" -id "$id" -listen "$ws" -admin-listen "$adm" \
			-etcd "$etcd" -kafka-brokers "$kafka" ${flags[@]+"${flags[@]}"} ${extra[@]+"${extra[@]}"} \
			>"$dir/logs/$id.log" 2>&1 &
		local pid=$!
		echo $pid >"$dir/pids/$id.pid"
		echo "$id $ws $adm $pid" >>"$dir/gateways.txt.tmp"
	done
	while read -r id ws adm pid; do
		if ! wait_ready "$adm" "$pid"; then
			tail -20 "$dir/logs/$id.log" >&2
			mv "$dir/gateways.txt.tmp" "$dir/gateways.txt"
			die "gateway $id did not become ready (stop the rest with: scripts/gateways.sh stop -dir $dir)"
		fi
	done <"$dir/gateways.txt.tmp"
	mv "$dir/gateways.txt.tmp" "$dir/gateways.txt"
	echo "started $n gateway(s); list in $dir/gateways.txt, token secret in $dir/token-secret"
	cat "$dir/gateways.txt"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
