#!/usr/bin/env bash
# Stop exactly the NATS nodes started by nats-start.sh (pid files under $BASE/n*/pid).
# Idempotent. Leaves the data dirs (pass --wipe to remove $BASE too).
BASE=${BASE:-/tmp/eval/nats}
for i in 1 2 3; do
  f="$BASE/n$i/pid"; [ -f "$f" ] || continue
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    # kill the timeout wrapper's process group (setsid made it a group leader): wrapper + server
    kill -TERM -- "-$p" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$p" 2>/dev/null
    echo "stopped n$i (pgid $p)"
  fi
  rm -f "$f"
done
[ "${1:-}" = "--wipe" ] && rm -rf "$BASE" && echo "wiped $BASE"
exit 0
