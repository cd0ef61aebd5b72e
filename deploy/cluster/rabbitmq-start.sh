#!/usr/bin/env bash
# Start a 3-node RabbitMQ 3.10 cluster with the MQTT plugin, loopback only, no system paths used.
# Runs as any user, root included: it does NOT use the Debian wrappers /usr/sbin/rabbitmq*
# (they switch to the `rabbitmq` user and HOME=/var/lib/rabbitmq, i.e. another Erlang cookie);
# it runs /usr/lib/rabbitmq/bin/* directly with HOME=$BASE/home (holds .erlang.cookie, mode 400)
# and every RABBITMQ_* path pointing under $BASE. A private epmd on ERL_EPMD_PORT (default 14369,
# 127.0.0.1) is started first so the system epmd port 4369 is untouched.
# rabbitmqctl must be run with the same env: `source $BASE/env.sh N` then
#   /usr/lib/rabbitmq/bin/rabbitmqctl ...   (this script writes env.sh).
# Idempotent (stops a previous cluster under the same BASE first; fresh data unless KEEP_DATA=1). Bounded: epmd and every node run
# under `timeout $RABBIT_TTL` (default 1800 s) as well as being stopped by rabbitmq-stop.sh.
# Env: BASE (default /tmp/eval/rabbit), PORT_BASE (default 0: MQTT 1891-1893, AMQP 5681-5683,
#      Erlang distribution 25681-25683, epmd 14369; PORT_BASE added to each),
#      QUEUE_TYPE (classic|quorum, default quorum: mqtt.durable_queue_type), RABBIT_TTL,
#      SUB_TTL (mqtt.subscription_ttl in ms or "infinity"; default infinity: 3.10's default is
#      86400000 = an offline session and its queue are deleted after 24 h).
#      LOG_LEVEL (log.file.level, default info: info logs every MQTT connection with its client id
#      and address; use warning for BROKER-6), EXTRA_CONF (lines appended to every rabbitmq.conf,
#      e.g. "raft.wal_max_size_bytes = 1048576"), HA_POLICY=1 with QUEUE_TYPE=classic (mirror
#      mqtt-subscription-* queues on all nodes: ha-mode all; deprecated classic mirroring).
# Prints "MQTT_PORTS=1891 1892 1893" as the last line on success; non-zero exit on failure.
set -euo pipefail
BASE=${BASE:-/tmp/eval/rabbit}
PB=${PORT_BASE:-0}
TTL=${RABBIT_TTL:-1800}
QT=${QUEUE_TYPE:-quorum}
SUBTTL=${SUB_TTL:-infinity}
EPMD_PORT=$((14369+PB))
RB=/usr/lib/rabbitmq/bin
HERE=$(cd "$(dirname "$0")" && pwd)
BASE="$BASE" PORT_BASE="$PB" "$HERE/rabbitmq-stop.sh" >/dev/null 2>&1 || true
# Fresh cluster by default (node data wiped). KEEP_DATA=1 restarts on the existing data: then the
# three nodes are started together (a node that was not the last to stop waits for its peers).
RESTART=0
if [ "${KEEP_DATA:-0}" = 1 ] && [ -d "$BASE/n1/mnesia/rabbit1@localhost" ]; then RESTART=1; else rm -rf "$BASE"/n1 "$BASE"/n2 "$BASE"/n3; fi
mkdir -p "$BASE/home"
[ -f "$BASE/home/.erlang.cookie" ] || { head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9 > "$BASE/home/.erlang.cookie"; }
chmod 400 "$BASE/home/.erlang.cookie"
echo '[rabbitmq_mqtt].' > "$BASE/enabled_plugins"
cat > "$BASE/env.sh" <<ENV
# usage: source $BASE/env.sh N   (N = 1..3), then run $RB/rabbitmqctl / rabbitmq-server
n=\${1:-1}
export HOME="$BASE/home"
export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODENAME="rabbit\$n@localhost" RABBITMQ_USE_LONGNAME=false
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=\$((5680+n+$PB)) RABBITMQ_DIST_PORT=\$((25680+n+$PB))
export RABBITMQ_CONF_ENV_FILE="$BASE/n\$n/rabbitmq-env.conf"
export RABBITMQ_CONFIG_FILE="$BASE/n\$n/rabbitmq.conf"
export RABBITMQ_ADVANCED_CONFIG_FILE="$BASE/n\$n/advanced.config"
export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$BASE/n\$n/mnesia" RABBITMQ_LOG_BASE="$BASE/n\$n/log"
export RABBITMQ_PID_FILE="$BASE/n\$n/rabbit.pid"
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
ENV
echo "== $BASE/env.sh"; cat "$BASE/env.sh"
# private epmd
setsid timeout "$TTL" epmd -port "$EPMD_PORT" -address 127.0.0.1 </dev/null >"$BASE/epmd.log" 2>&1 &
echo $! > "$BASE/epmd.pid"; echo "started epmd on 127.0.0.1:$EPMD_PORT (pgid $(cat "$BASE/epmd.pid"))"
sleep 0.5
for i in 1 2 3; do
  d="$BASE/n$i"; mkdir -p "$d/log" "$d/mnesia"; : > "$d/rabbitmq-env.conf"
  cat > "$d/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$((5680+i+PB))
mqtt.listeners.tcp.default = 127.0.0.1:$((1890+i+PB))
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.vhost = /
mqtt.exchange = amq.topic
mqtt.durable_queue_type = $QT
mqtt.subscription_ttl = $SUBTTL
mqtt.prefetch = 10
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = rabbit1@localhost
cluster_formation.classic_config.nodes.2 = rabbit2@localhost
cluster_formation.classic_config.nodes.3 = rabbit3@localhost
cluster_partition_handling = pause_minority
log.console = false
log.file.level = ${LOG_LEVEL:-info}
${EXTRA_CONF:-}
CONF
  echo "== $d/rabbitmq.conf"; cat "$d/rabbitmq.conf"
  ( source "$BASE/env.sh" $i; exec setsid timeout "$TTL" "$RB/rabbitmq-server" </dev/null >"$d/stdout.log" 2>&1 ) &
  echo $! > "$d/pid"; echo "started rabbit$i@localhost (pgid $(cat "$d/pid"))"
  [ $RESTART = 1 ] && [ $i -lt 3 ] && continue   # restart: launch all three, then wait below
  # Start the nodes ONE AT A TIME: with 3.10.8, nodes booting together joined the Mnesia cluster
  # but left the MQTT client-id tracker (Ra cluster `mqtt_node`) without a leader on one node, whose
  # MQTT listener then refused every CONNECT ("client ID registration timed out").
  # Wait (bounded, 90 s per node) for: this node's MQTT port, $i running nodes, an MQTT CONNECT.
  ok=0
  # 90 s per node when forming; 300 s for a restart on kept data (observed with 3.10.8: two of the
  # three listeners opened only ~3.5 min after a full-cluster restart).
  tries=45; [ $RESTART = 1 ] && tries=150
  for t in $(seq 1 $tries); do
    if [ $RESTART = 1 ]; then
      up=1; for j in 1 2 3; do (exec 3<>/dev/tcp/127.0.0.1/$((1890+j+PB))) 2>/dev/null || up=0; done
      if [ $up = 1 ]; then ok=1; break; fi
    elif (exec 3<>/dev/tcp/127.0.0.1/$((1890+i+PB))) 2>/dev/null; then
      n=$( (source "$BASE/env.sh" $i; timeout 20 "$RB/rabbitmqctl" -q cluster_status --formatter json 2>/dev/null) | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("running_nodes",[])))' 2>/dev/null || echo 0)
      if [ "$n" = "$i" ] && timeout 15 mosquitto_pub -h 127.0.0.1 -p $((1890+i+PB)) -i "probe-start-$i" -q 1 -t probe/start -m x 2>/dev/null; then ok=1; break; fi
    fi
    sleep 2
  done
  [ $ok = 1 ] || { echo "rabbit$i did not become ready; logs in $d/log" >&2; exit 1; }
  [ $RESTART = 1 ] && echo "all three MQTT listeners up" || echo "rabbit$i ready: $i running node(s), MQTT CONNECT accepted on $((1890+i+PB))"
done
# final check: every listener accepts an MQTT CONNECT (client-id tracker has a leader everywhere)
for i in 1 2 3; do
  timeout 15 mosquitto_pub -h 127.0.0.1 -p $((1890+i+PB)) -i "probe-final-$i" -q 1 -t probe/start -m x \
    || { echo "MQTT CONNECT refused on $((1890+i+PB))" >&2; exit 1; }
done
if [ "$QT" = classic ] && [ "${HA_POLICY:-0}" = 1 ]; then
  ( source "$BASE/env.sh" 1; timeout 20 "$RB/rabbitmqctl" set_policy mqtt-ha '^mqtt-subscription-' '{"ha-mode":"all","ha-sync-mode":"automatic"}' --apply-to queues )
fi
echo "MQTT_PORTS=$((1891+PB)) $((1892+PB)) $((1893+PB))"
