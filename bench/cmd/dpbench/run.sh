#!/usr/bin/env bash
# One dpbench run against a dataproxy started for it, on fresh storage that
# is removed afterwards; the figures in docs/BENCHMARKS.md come from it.
#
#   bench/cmd/dpbench/run.sh mysql  <dbs> <tables> [dpbench flags...]
#   bench/cmd/dpbench/run.sh sqlite <dbs> <tables> [dpbench flags...]
#
# mysql uses the MariaDB at $MYSQL (default root@tcp(127.0.0.1:3306)), creating
# databases dpbench_<run>_<i> and dropping them at the end with the mysql
# client (as root on 127.0.0.1); sqlite uses a
# temporary directory. Redis keys go under a prefix of their own (routes are
# not used by appends). Extra dataproxy flags: $DATAPROXY_FLAGS. Binaries:
# $BIN (default ./bin) holding dataproxy and dpbench, e.g. from
#   go build -o bin/ ./dataproxy/cmd/dataproxy ./bench/cmd/dpbench
# Also prints the CPU seconds the dataproxy (and mariadbd, if it can read its
# /proc entry) used during the run.
set -euo pipefail

store=${1:?store: mysql or sqlite}
dbs=${2:?number of databases}
tables=${3:?tables per database}
shift 3
BIN=${BIN:-./bin}
MYSQL=${MYSQL:-root@tcp(127.0.0.1:3306)}
LISTEN=${LISTEN:-127.0.0.1:18920}
ADMIN=${ADMIN:-127.0.0.1:19192}
run=dpbench_$(date +%s)_$$

cpu() { # utime+stime of a pid, in seconds
	local f
	read -ra f <"/proc/$1/stat" || return 0
	echo "scale=2; (${f[13]} + ${f[14]}) / $(getconf CLK_TCK)" | bc
}

args=(-etcd "" -admin-listen "$ADMIN" -listen "$LISTEN" -log-level warn
	-shard-tables "$tables" -redis-addr "${REDIS:-127.0.0.1:6379}" -redis-prefix "$run:")
dir=""
case $store in
mysql)
	dsns=""
	for i in $(seq 0 $((dbs - 1))); do dsns+="$MYSQL/${run}_$i;"; done
	args+=(-store mysql -shard-dbs "$dsns" -mysql-max-open 4 -mysql-max-idle 4)
	;;
sqlite)
	dir=$(mktemp -d)
	args+=(-store sqlite -data-dir "$dir" -shard-dbs "$dbs")
	;;
*)
	echo "store must be mysql or sqlite" >&2
	exit 2
	;;
esac

# shellcheck disable=SC2086 # DATAPROXY_FLAGS is a list of flags
"$BIN/dataproxy" "${args[@]}" ${DATAPROXY_FLAGS:-} &
dp=$!
cleanup() {
	kill "$dp" 2>/dev/null || true
	wait "$dp" 2>/dev/null || true
	if [ "$store" = mysql ]; then
		for i in $(seq 0 $((dbs - 1))); do
			mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS ${run}_$i" || true
		done
	fi
	[ -n "$dir" ] && rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 300); do
	curl -sf "http://$ADMIN/readyz" >/dev/null && break
	kill -0 "$dp" 2>/dev/null || { echo "dataproxy did not start" >&2; exit 1; }
	sleep 0.1
done
echo "dpbench: $store, $dbs database(s) x $tables table(s); load average $(cut -d' ' -f1-3 /proc/loadavg)"
mdb=$(pgrep -x mariadbd | head -1 || true)
d0=$(cpu "$dp")
m0=$([ -n "$mdb" ] && cpu "$mdb" || echo 0)
"$BIN/dpbench" -addr "$LISTEN" "$@"
d1=$(cpu "$dp")
m1=$([ -n "$mdb" ] && cpu "$mdb" || echo 0)
echo "cpu seconds during the run: dataproxy $(echo "$d1 - $d0" | bc)$([ "$store" = mysql ] && echo ", mariadbd $(echo "$m1 - $m0" | bc)")"
curl -s "http://$ADMIN/metrics" | grep -E '^dataproxy_store_(commits|batched_calls)_total' || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
