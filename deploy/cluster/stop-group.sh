# Sourced by the stop scripts of deploy/cluster/: the one way they stop what they started.
# stop_group PIDFILE LABEL [TRIES]: the process in PIDFILE leads a process group (started with
# setsid, a `timeout` wrapper and its child): SIGTERM the group, wait until the group is gone
# (TRIES x 0.25 s, default 40), then SIGKILL what is left; the pid file is removed. Never by name.
# Safe under `set -e`: a group already gone is not an error.
stop_group() {
  local file=$1 label=$2 tries=${3:-40} p
  [ -f "$file" ] || return 0
  p=$(cat "$file")
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || true
    for _ in $(seq 1 "$tries"); do pgrep -g "$p" >/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$p" 2>/dev/null || true
    echo "stopped $label (pgid $p)"
  fi
  rm -f "$file"
}
