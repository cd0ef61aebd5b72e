#!/usr/bin/env bash
# Stop exactly the NATS nodes started by nats-start.sh (pid files under $BASE/n*/pid).
# Idempotent. Leaves the data dirs (pass --wipe to remove $BASE too).
BASE=${BASE:-/tmp/eval/nats}
# shellcheck source=stop-group.sh
source "$(dirname "$0")/stop-group.sh"
# The timeout wrapper's process group (setsid made it a group leader): wrapper + server.
for i in 1 2 3; do stop_group "$BASE/n$i/pid" "n$i" 20; done
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
