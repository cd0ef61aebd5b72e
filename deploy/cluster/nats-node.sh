#!/usr/bin/env bash
# nats-node.sh start|kill|stop N : (re)start one node of the cluster made by nats-start.sh (same
# config and store dir, it rejoins), SIGKILL it (fault injection), or stop it.
set -euo pipefail
BASE=${BASE:-/tmp/eval/nats}; PB=${PORT_BASE:-0}; TTL=${NATS_TTL:-1800}
cmd=$1; i=$2; d="$BASE/n$i"
case $cmd in
  kill) p=$(pgrep -g "$(cat "$d/pid")" -x nats-server); kill -KILL "$p"; echo "SIGKILL n$i nats-server pid $p" ;;
  stop) kill -TERM -- "-$(cat "$d/pid")" 2>/dev/null || true; echo "stopped n$i" ;;
  start)
    if [ -f "$d/pid" ] && pgrep -g "$(cat "$d/pid")" -x nats-server >/dev/null; then echo "n$i already running"; exit 0; fi
    setsid timeout "$TTL" nats-server -c "$d/nats.conf" -l "$d/nats.log" </dev/null >/dev/null 2>&1 &
    echo $! > "$d/pid"
    for t in $(seq 1 60); do
      curl -sf "http://127.0.0.1:$((8220+i+PB))/healthz?js-enabled-only=true" >/dev/null 2>&1 && \
        timeout 10 mosquitto_pub -h 127.0.0.1 -p $((1880+i+PB)) -i "probe-node-$i" ${PROBE_AUTH:-} -q 1 -t probe/start -m x 2>/dev/null && \
        { echo "n$i up (pgid $(cat "$d/pid")), MQTT on $((1880+i+PB))"; exit 0; }
      sleep 1
    done
    echo "n$i did not come up" >&2; exit 1 ;;
esac
