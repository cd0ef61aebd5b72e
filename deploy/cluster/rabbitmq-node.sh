#!/usr/bin/env bash
# rabbitmq-node.sh start|kill|stop N : (re)start one node of the cluster made by rabbitmq-start.sh
# (it rejoins: same node name, data dir, cookie), SIGKILL its VM (fault injection), or stop it.
set -euo pipefail
BASE=${BASE:-/tmp/eval/rabbit}; PB=${PORT_BASE:-0}; TTL=${RABBIT_TTL:-1800}; RB=/usr/lib/rabbitmq/bin
cmd=$1; i=$2; d="$BASE/n$i"
case $cmd in
  kill) p=$(pgrep -g "$(cat "$d/pid")" beam.smp); kill -KILL "$p"; echo "SIGKILL rabbit$i beam.smp pid $p" ;;
  stop) kill -TERM -- "-$(cat "$d/pid")" 2>/dev/null || true; echo "stopped rabbit$i" ;;
  start)
    if [ -f "$d/pid" ] && pgrep -g "$(cat "$d/pid")" beam.smp >/dev/null; then echo "rabbit$i already running"; exit 0; fi
    ( source "$BASE/env.sh" "$i"; exec setsid timeout "$TTL" "$RB/rabbitmq-server" </dev/null >>"$d/stdout.log" 2>&1 ) &
    echo $! > "$d/pid"
    for t in $(seq 1 45); do
      timeout 10 mosquitto_pub -h 127.0.0.1 -p $((1890+i+PB)) -i "probe-node-$i" -q 1 -t probe/start -m x 2>/dev/null && { echo "rabbit$i up (pgid $(cat "$d/pid")), MQTT on $((1890+i+PB))"; exit 0; }
      sleep 2
    done
    echo "rabbit$i did not come up" >&2; exit 1 ;;
esac
