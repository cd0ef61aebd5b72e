#!/usr/bin/env bash
# profile-node.sh start|kill|stop NAME : one process of the cluster profile (profile-start.sh).
#   NAME s1 | s2   a `sotto serve` instance (front + membership instance): start it on its data
#                  and ports (waits, max 60 s, for its "ready" line), SIGKILL it (a crash), or
#                  stop it (SIGTERM: it closes its connections and exits).
#   NAME n1..n3    a NATS node (nats-node.sh: it rejoins on its data).
# Env: BASE, as for profile-start.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${BASE:-/tmp/sotto-cluster}
cmd=$1; name=$2
# shellcheck disable=SC1091
source "$BASE/profile.env"
case $name in
  n[1-3])
    BASE="$BASE/nats" PORT_BASE=$PB NATS_TTL=$TTL PROBE_AUTH="-u sotto -P $SOTTO_NATS_PASSWORD" \
      exec "$HERE/nats-node.sh" "$cmd" "${name#n}" ;;
  s[1-2]) ;;
  *) echo "unknown process $name (s1, s2, n1, n2, n3)" >&2; exit 2 ;;
esac
n=${name#s}; d="$BASE/$name"
running() { [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; }
case $cmd in
  kill)
    p=$(pgrep -g "$(cat "$d/pid")" -x sotto); kill -KILL "$p"; echo "SIGKILL $name sotto pid $p" ;;
  stop)
    # shellcheck source=stop-group.sh
    source "$HERE/stop-group.sh"
    stop_group "$d/pid" "$name" ;;
  start)
    if running && pgrep -g "$(cat "$d/pid")" -x sotto >/dev/null; then echo "$name already running"; exit 0; fi
    : > "$d/serve.log"
    setsid timeout "$TTL" "$SOTTO" serve --data "$d" \
      --listen "127.0.0.1:$((7450+n+PB))" --mqtt "127.0.0.1:$((8850+n+PB))" \
      --metrics "127.0.0.1:$((9460+n+PB))" --difficulty "$DIFFICULTY" \
      --broker nats --nats "$NATS_MQTT" --nats-api "$NATS_API" </dev/null >"$d/serve.log" 2>&1 &
    echo $! > "$d/pid"
    for _ in $(seq 1 120); do
      grep -q '^ready' "$d/serve.log" && { echo "$name up: membership https://127.0.0.1:$((7450+n+PB)), front 127.0.0.1:$((8850+n+PB))"; exit 0; }
      running || break
      sleep 0.5
    done
    echo "$name did not start; its log:" >&2; cat "$d/serve.log" >&2; exit 1 ;;
  *) echo "usage: profile-node.sh start|kill|stop s1|s2|n1|n2|n3" >&2; exit 2 ;;
esac
