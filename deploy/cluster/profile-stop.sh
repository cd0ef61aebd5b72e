#!/usr/bin/env bash
# Stops the cluster profile started by profile-start.sh: both `sotto serve` instances, the three
# NATS nodes and PostgreSQL, each by the process group in its pid file (never by name).
# Idempotent. Leaves the data (pass --wipe to remove $BASE too).
BASE=${BASE:-/tmp/sotto-cluster}
HERE=$(cd "$(dirname "$0")" && pwd)
stop_group() { # pid file, name
  [ -f "$1" ] || return 0
  p=$(cat "$1")
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$p" 2>/dev/null
    echo "stopped $2 (pgid $p)"
  fi
  rm -f "$1"
}
for n in 1 2; do stop_group "$BASE/s$n/pid" "s$n"; done
BASE="$BASE/nats" "$HERE/nats-stop.sh"
stop_group "$BASE/pg/pid" postgresql
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
