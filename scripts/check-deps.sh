#!/usr/bin/env bash
# Checks the dependency rules between GoChat's modules:
#   - pkg imports no service;
#   - the gateway imports neither logic, task nor dataproxy;
#   - only dataproxy imports the MySQL and Redis client drivers.
set -euo pipefail
cd "$(dirname "$0")/.."
M=github.com/gochat-im/gochat
fail=0

deps() { go list -deps "$@" 2>/dev/null; }

check() { # check <what> <packages pattern> <forbidden regexp>
	local what=$1 pkgs=$2 forbidden=$3 bad
	bad=$(deps "$pkgs" | grep -E "$forbidden" || true)
	if [ -n "$bad" ]; then
		echo "dependency rule broken: $what imports:"; echo "$bad" | sed 's/^/  /'
		fail=1
	fi
}

services="^$M/(gateway|logic|task|dataproxy|devstack|bench)(/|$)"
drivers='^github.com/(go-sql-driver/mysql|redis/go-redis)(/|$)'
check "pkg" "$M/pkg/..." "$services"
check "gateway" "$M/gateway/..." "^$M/(logic|task|dataproxy)(/|$)"
for svc in gateway logic task devstack bench; do
	check "$svc" "$M/$svc/..." "$drivers"
done
[ $fail -eq 0 ] && echo "dependency rules hold"
exit $fail
