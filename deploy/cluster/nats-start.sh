#!/usr/bin/env bash
# Start a 3-node NATS 2.9 cluster with JetStream and the MQTT 3.1.1 listener, loopback only.
# Idempotent: stops a previous cluster started by this script (same BASE) first; fresh data unless
# KEEP_DATA=1.
# Bounded: every node runs under `timeout $NATS_TTL` (default 1800 s) as well as being stopped
# by nats-stop.sh. Runs as any user (root not needed; no fixed system paths are touched).
# Env: BASE (default /tmp/eval/nats), PORT_BASE (default 0: client 4221-4223, cluster 6221-6223,
#      MQTT 1881-1883, monitor 8221-8223; PORT_BASE is added to each), NATS_TTL,
#      MQTT_REPLICAS (stream_replicas/consumer_replicas for the MQTT streams, default 3),
#      ACK_WAIT (mqtt.ack_wait: when an unacknowledged QoS 1 delivery is sent again, default 30s),
#      NATS_INCLUDE (optional file, e.g. an `authorization { users = [...] }` block: copied into each
#      node dir as include.conf and included at top level); PROBE_AUTH (e.g. "-u probe -P x": the
#      credentials of the readiness probe, which publishes QoS 1 to probe/start).
# Prints: "MQTT_PORTS=1881 1882 1883" on success (last line), exits non-zero on failure.
set -euo pipefail
BASE=${BASE:-/tmp/eval/nats}
PB=${PORT_BASE:-0}
TTL=${NATS_TTL:-1800}
R=${MQTT_REPLICAS:-3}
ACK=${ACK_WAIT:-30s}
HERE=$(cd "$(dirname "$0")" && pwd)
BASE="$BASE" "$HERE/nats-stop.sh" >/dev/null 2>&1 || true
# Fresh cluster by default (JetStream stores wiped); KEEP_DATA=1 restarts on the existing stores.
[ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$BASE"/n1 "$BASE"/n2 "$BASE"/n3
mkdir -p "$BASE"
ROUTES=""
for i in 1 2 3; do ROUTES="$ROUTES \"nats-route://127.0.0.1:$((6220+i+PB))\","; done
for i in 1 2 3; do
  d="$BASE/n$i"; mkdir -p "$d/js"
  INC=""
  if [ -n "${NATS_INCLUDE:-}" ]; then cp "$NATS_INCLUDE" "$d/include.conf"; INC="include ./include.conf"; fi
  cat > "$d/nats.conf" <<CONF
$INC
server_name: n$i
host: 127.0.0.1
port: $((4220+i+PB))
http: 127.0.0.1:$((8220+i+PB))
jetstream {
  store_dir: "$d/js"
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: sotto
  listen: 127.0.0.1:$((6220+i+PB))
  routes: [ ${ROUTES%,} ]
}
mqtt {
  host: 127.0.0.1
  port: $((1880+i+PB))
  stream_replicas: $R
  consumer_replicas: $R
  ack_wait: "$ACK"
  max_ack_pending: 1000
}
CONF
  echo "== $d/nats.conf"; cat "$d/nats.conf"
  setsid timeout "$TTL" nats-server -c "$d/nats.conf" -l "$d/nats.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$d/pid"
  echo "started n$i: pid $(cat "$d/pid") (timeout wrapper; nats-server is its child)"
done
# Wait (bounded, 60 s) for JetStream meta leader + MQTT listeners.
ok=0
for t in $(seq 1 120); do
  ready=1
  for i in 1 2 3; do
    curl -sf "http://127.0.0.1:$((8220+i+PB))/healthz?js-enabled-only=true" >/dev/null 2>&1 || ready=0
    (exec 3<>/dev/tcp/127.0.0.1/$((1880+i+PB))) 2>/dev/null || ready=0
  done
  if [ $ready = 1 ] && curl -sf "http://127.0.0.1:$((8221+PB))/jsz" | grep -q '"leader"'; then
    # an MQTT CONNECT that needs the $MQTT_sess stream: proves JetStream cluster works
    if timeout 15 mosquitto_pub -h 127.0.0.1 -p $((1881+PB)) -i probe-start ${PROBE_AUTH:-} -q 1 -t probe/start -m x 2>/dev/null; then ok=1; break; fi
  fi
  sleep 0.5
done
[ $ok = 1 ] || { echo "cluster did not become ready; logs in $BASE/n*/nats.log" >&2; exit 1; }
echo "MQTT_PORTS=$((1881+PB)) $((1882+PB)) $((1883+PB))"
