#!/usr/bin/env bash
# Print the path of a redis-server binary, installing Debian's `redis-server`
# package once if it is missing (global rate-limit tests keep their counters
# in Redis). Only the path goes to stdout; progress goes to stderr.
#
# Order: $REDIS_SERVER_BIN if set; `redis-server` on PATH; apt-get install
# (root only, otherwise we say what to install).
set -euo pipefail

say() { echo "redis: $*" >&2; }
die() { echo "redis: error: $*" >&2; exit 1; }

if [[ -n ${REDIS_SERVER_BIN:-} ]]; then
    [[ -x $REDIS_SERVER_BIN ]] || die "REDIS_SERVER_BIN=$REDIS_SERVER_BIN is not executable"
    echo "$REDIS_SERVER_BIN"; exit 0
fi
if b=$(command -v redis-server); then echo "$b"; exit 0; fi
for b in /usr/bin/redis-server /usr/sbin/redis-server; do
    if [[ -x $b ]]; then echo "$b"; exit 0; fi
done
command -v apt-get >/dev/null || die "redis-server is not installed; install Redis (e.g. apt-get install redis-server) or set REDIS_SERVER_BIN"
[[ $(id -u) -eq 0 ]] || die "redis-server is not installed; run: sudo apt-get install -y --no-install-recommends redis-server"
say "installing redis-server (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be missing or stale.
apt-get install -y --no-install-recommends redis-server >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends redis-server >&2; } \
    || die "apt-get could not install redis-server"
# The package starts a system-wide Redis on :6379 where an init system runs;
# the tests start their own on free ports and do not need it.
command -v redis-server || die "redis-server installed but not on PATH"
