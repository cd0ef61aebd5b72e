#!/usr/bin/env bash
# Stop exactly the RabbitMQ nodes and the private epmd started by rabbitmq-start.sh (pid files
# under $BASE). Idempotent. Pass --wipe to delete $BASE (data, cookie, logs) too.
BASE=${BASE:-/tmp/eval/rabbit}
stopgrp() { # $1 = pgid (setsid'd timeout wrapper), $2 = label
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM -- "-$p" 2>/dev/null
  for _ in $(seq 1 40); do pgrep -g "$p" >/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$p" 2>/dev/null
  echo "stopped $2 (pgid $p)"
}
for i in 1 2 3; do
  f="$BASE/n$i/pid"; [ -f "$f" ] || continue
  # the Erlang VM daemonises nothing, but erl_child_setup/inet_gethost stay in the same group
  stopgrp "$(cat "$f")" "rabbit$i"; rm -f "$f"
done
[ -f "$BASE/epmd.pid" ] && { stopgrp "$(cat "$BASE/epmd.pid")" epmd; rm -f "$BASE/epmd.pid"; }
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
