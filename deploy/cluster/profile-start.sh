#!/usr/bin/env bash
# The cluster profile (issue 17), loopback only, one command:
#   3 NATS nodes (JetStream, MQTT streams replicated on all 3; nats-start.sh),
#   PostgreSQL (the membership directory all instances share),
#   2 `sotto serve --broker nats` instances, each a front and a membership instance, with one CA.
# Idempotent: stops a previous profile with the same BASE first; fresh data unless KEEP_DATA=1.
# Bounded: every process runs under `timeout $PROFILE_TTL` (default 1800 s) in its own process
# group; profile-stop.sh kills exactly those groups.
#
# Env: BASE (default /tmp/sotto-cluster), PORT_BASE (default 0, added to every port; multiples of
#      100 run several profiles side by side), PROFILE_TTL, SOTTO (the `sotto` binary; default:
#      target/release/sotto of this checkout, built if missing), ACK_WAIT (NATS mqtt.ack_wait,
#      default 5s), DIFFICULTY (signup proof of work, default 16).
# Ports (PORT_BASE=0): instance N (1, 2): membership https://127.0.0.1:745N, front 127.0.0.1:885N,
#      metrics 127.0.0.1:946N; NATS MQTT 1881-1883, client 4221-4223, monitoring 8221-8223;
#      PostgreSQL 5441.
# Prints, last: "PROFILE_READY membership=<url1>,<url2> ca=<BASE>/s1/ca.pem".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-/tmp/sotto-cluster}
PB=${PORT_BASE:-0}
TTL=${PROFILE_TTL:-1800}
DIFFICULTY=${DIFFICULTY:-16}
export BASE PORT_BASE=$PB
"$HERE/profile-stop.sh" >/dev/null 2>&1 || true
[ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$BASE"
mkdir -p "$BASE"
chmod 700 "$BASE"

# The `sotto` binary.
SOTTO=${SOTTO:-$ROOT/target/release/sotto}
if [ ! -x "$SOTTO" ]; then
  echo "building $SOTTO (cargo build --release -p sotto) ..."
  (cd "$ROOT" && cargo build -q --release --locked -p sotto --bin sotto)
fi
# Absolute, so that profile-node.sh works from any directory.
SOTTO="$(cd "$(dirname "$SOTTO")" && pwd)/$(basename "$SOTTO")"

# The fronts' NATS user and its password (random, kept with the data; never on a command line).
if [ ! -f "$BASE/nats-password" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BASE/nats-password")
fi
PASSWORD=$(cat "$BASE/nats-password")
(umask 077; printf 'authorization { user: sotto, password: "%s" }\n' "$PASSWORD" > "$BASE/nats-auth.conf")

# NATS: 3 nodes. The readiness probe connects as the fronts' user.
echo "== NATS"
AUTH="$BASE/nats-auth.conf"
BASE="$BASE/nats" NATS_TTL=$TTL NATS_INCLUDE="$AUTH" ACK_WAIT=${ACK_WAIT:-5s} \
  PROBE_AUTH="-u sotto -P $PASSWORD" "$HERE/nats-start.sh" | grep -v '^==\|^  \|^}\|^[a-z_]*:\|^include\|^jetstream\|^cluster\|^mqtt' || true
curl -sf "http://127.0.0.1:$((8221+PB))/healthz" >/dev/null

# PostgreSQL: initdb in $BASE/pg, as the `postgres` user when run as root (it refuses root).
echo "== PostgreSQL"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/postgres" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
PGPORT=$((5441+PB))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$BASE/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$BASE/pg" && chmod 755 "$BASE"
if [ ! -f "$BASE/pg/data/PG_VERSION" ]; then
  as_pg "$PGBIN/initdb" -D "$BASE/pg/data" -U sotto --auth=trust -E UTF8 >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
  setsid timeout "$TTL" runuser -u postgres -- "$PGBIN/postgres" -D "$BASE/pg/data" -p "$PGPORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$BASE/pg" \
    </dev/null >"$BASE/pg/postgres.log" 2>&1 &
else
  setsid timeout "$TTL" "$PGBIN/postgres" -D "$BASE/pg/data" -p "$PGPORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$BASE/pg" \
    </dev/null >"$BASE/pg/postgres.log" 2>&1 &
fi
echo $! > "$BASE/pg/pid"
for _ in $(seq 1 60); do
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
  sleep 0.5
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" || { echo "PostgreSQL did not start: $BASE/pg/postgres.log" >&2; exit 1; }
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U sotto -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'sotto'" | grep -q 1 \
  || "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sotto sotto
echo "PostgreSQL on 127.0.0.1:$PGPORT"
DIRECTORY="postgresql://sotto@127.0.0.1:$PGPORT/sotto"

# Two `sotto serve` instances; the second gets the first one's CA files. What profile-node.sh
# needs to start one again is kept in $BASE/profile.env (mode 600: it holds the NATS password).
NATS_MQTT="127.0.0.1:$((1881+PB)),127.0.0.1:$((1882+PB)),127.0.0.1:$((1883+PB))"
NATS_API="127.0.0.1:$((4221+PB)),127.0.0.1:$((4222+PB)),127.0.0.1:$((4223+PB))"
(umask 077; cat > "$BASE/profile.env" <<ENV
SOTTO='$SOTTO'
TTL='$TTL'
PB='$PB'
DIFFICULTY='$DIFFICULTY'
NATS_MQTT='$NATS_MQTT'
NATS_API='$NATS_API'
PGBIN='$PGBIN'
PGPORT='$PGPORT'
export SOTTO_DIRECTORY='$DIRECTORY'
export SOTTO_NATS_PASSWORD='$PASSWORD'
ENV
)
URLS=""
for n in 1 2; do
  d="$BASE/s$n"
  mkdir -p "$d"; chmod 700 "$d"
  if [ "$n" = 2 ] && [ ! -f "$d/ca.key" ]; then
    cp -p "$BASE/s1/ca.pem" "$BASE/s1/ca.key" "$d/"
  fi
  "$HERE/profile-node.sh" start "s$n" >/dev/null
  URLS="$URLS${URLS:+,}https://127.0.0.1:$((7450+n+PB))"
done
echo "PROFILE_READY membership=$URLS ca=$BASE/s1/ca.pem"
