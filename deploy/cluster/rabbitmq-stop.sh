#!/usr/bin/env bash
# Stop exactly the RabbitMQ nodes and the private epmd started by rabbitmq-start.sh (pid files
# under $BASE). Idempotent. Pass --wipe to delete $BASE (data, cookie, logs) too.
BASE=${BASE:-/tmp/eval/rabbit}
# shellcheck source=stop-group.sh
source "$(dirname "$0")/stop-group.sh"
# The Erlang VM daemonises nothing, but erl_child_setup/inet_gethost stay in the same group.
for i in 1 2 3; do stop_group "$BASE/n$i/pid" "rabbit$i"; done
stop_group "$BASE/epmd.pid" epmd
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
