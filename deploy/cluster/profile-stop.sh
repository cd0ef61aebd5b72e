#!/usr/bin/env bash
# Stops the cluster profile started by profile-start.sh: both `sotto serve` instances, the three
# NATS nodes and PostgreSQL, each by the process group in its pid file (never by name).
# Idempotent. Leaves the data (pass --wipe to remove $BASE too).
BASE=${BASE:-/tmp/sotto-cluster}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=stop-group.sh
source "$HERE/stop-group.sh"
for n in 1 2; do stop_group "$BASE/s$n/pid" "s$n"; done
BASE="$BASE/nats" "$HERE/nats-stop.sh"
stop_group "$BASE/pg/pid" postgresql
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
