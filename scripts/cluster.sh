#!/usr/bin/env bash
# A confab cluster on loopback: three NATS servers clustered with
# JetStream, a PostgreSQL server for the shared directory, and N confab
# nodes (default 3) joined through them (docs/cluster.md).
#
#   scripts/cluster.sh up       start everything (builds the release binary if needed)
#   scripts/cluster.sh down     stop everything (data kept under the state directory)
#   scripts/cluster.sh status   what runs, and where
#   scripts/cluster.sh kill N   kill -9 confab node N (to watch the others take over)
#   scripts/cluster.sh start N  start confab node N again on its data
#   scripts/cluster.sh clean    down, then remove the state directory
#
# Node i serves the API on 127.0.0.1:8i80, WebSocket on 8i81, QUIC on
# 8i43 (UDP) and metrics on 8i90; NATS server j listens on 42(21+j)
# (clients), 62(21+j) (routes) and 82(21+j) (monitoring). All nodes share
# node 1's generated TLS certificate, one token key and the directory.
#
# Settings (environment): CONFAB_CLUSTER_NODES (default 3),
# CONFAB_CLUSTER_DIR (default target/cluster), CONFAB_BIN (default
# target/release/confab), CONFAB_NATS_SYNC (JetStream sync_interval:
# "always" fsyncs every acknowledged append; default the server's 2m,
# durability then coming from replication to three servers).
set -euo pipefail
cd "$(dirname "$0")/.."

NODES="${CONFAB_CLUSTER_NODES:-3}"
STATE="${CONFAB_CLUSTER_DIR:-target/cluster}"
CONFAB="${CONFAB_BIN:-target/release/confab}"
PG_PORT=55433
NATS_SERVERS=3

log() { echo "cluster.sh: $*" >&2; }

nats_bin() {
  if command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
  elif [ -x "$HOME/.local/share/confab/nats/bin/nats-server" ]; then
    echo "$HOME/.local/share/confab/nats/bin/nats-server"
  else
    return 1
  fi
}

wait_for() { # what, command...
  local what="$1"
  shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  log "gave up waiting for $what"
  return 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

nats_urls() {
  local urls=() j
  for j in $(seq 1 $NATS_SERVERS); do urls+=("\"nats://127.0.0.1:$((4220 + j))\""); done
  (IFS=,; echo "${urls[*]}")
}

start_nats() {
  local j routes=() conf
  for j in $(seq 1 $NATS_SERVERS); do routes+=("\"nats://127.0.0.1:$((6220 + j))\""); done
  for j in $(seq 1 $NATS_SERVERS); do
    if alive "$STATE/nats-$j.pid"; then continue; fi
    conf="$STATE/nats-$j.conf"
    mkdir -p "$STATE/nats-$j"
    {
      echo "server_name: n$j"
      echo "listen: 127.0.0.1:$((4220 + j))"
      echo "http: 127.0.0.1:$((8220 + j))"
      # A group of sends with a 100,000-character text is well under this.
      echo "max_payload: 4MB"
      echo "jetstream {"
      echo "  store_dir: \"$PWD/$STATE/nats-$j\""
      if [ -n "${CONFAB_NATS_SYNC:-}" ]; then echo "  sync_interval: ${CONFAB_NATS_SYNC}"; fi
      echo "}"
      echo "cluster {"
      echo "  name: confab"
      echo "  listen: 127.0.0.1:$((6220 + j))"
      echo "  routes: [$(IFS=,; echo "${routes[*]}")]"
      echo "}"
    } >"$conf"
    GOMAXPROCS="${CONFAB_NATS_GOMAXPROCS:-$(nproc)}" nohup "$(nats_bin)" -c "$conf" >"$STATE/nats-$j.log" 2>&1 &
    echo $! >"$STATE/nats-$j.pid"
  done
  for j in $(seq 1 $NATS_SERVERS); do
    wait_for "NATS server $j" bash -c "exec 3<>/dev/tcp/127.0.0.1/$((4220 + j))"
  done
  # JetStream serves once its servers have elected a meta leader.
  wait_for "JetStream's meta leader" bash -c \
    "curl -sf http://127.0.0.1:8221/jsz | grep -q '\"leader\"'"
  log "NATS: $(nats_urls)"
}

node_config() { # i
  local i="$1" tls=""
  if [ "$i" -ne 1 ]; then
    tls="[tls]
cert_path = \"$PWD/$STATE/node-1/tls/self-signed.crt\"
key_path = \"$PWD/$STATE/node-1/tls/self-signed.key\""
  fi
  cat <<EOF
data_dir = "$PWD/$STATE/node-$i"

[api]
addr = "127.0.0.1:8${i}80"
database_url = "$(cat "$STATE/database_url")"
token_secret = "$(cat "$STATE/token_secret")"

[gateway]
ws_addr = "127.0.0.1:8${i}81"
quic_addr = "127.0.0.1:8${i}43"

[metrics]
addr = "127.0.0.1:8${i}90"

[cluster]
nats = [$(nats_urls)]
node_id = "node-$i"

$tls
EOF
}

start_node() { # i
  local i="$1"
  if alive "$STATE/node-$i.pid"; then
    log "node $i already runs"
    return 0
  fi
  node_config "$i" >"$STATE/node-$i.toml"
  nohup "$CONFAB" serve --config "$STATE/node-$i.toml" >>"$STATE/node-$i.log" 2>&1 &
  echo $! >"$STATE/node-$i.pid"
  if ! wait_for "node $i" curl -sf "http://127.0.0.1:8${i}80/readyz"; then
    tail -20 "$STATE/node-$i.log" >&2
    return 1
  fi
  log "node $i: API http://127.0.0.1:8${i}80, ws://127.0.0.1:8${i}81/v1/ws, quic 127.0.0.1:8${i}43"
}

up() {
  if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 9 ]; then
    log "CONFAB_CLUSTER_NODES must be 1 to 9"
    exit 1
  fi
  nats_bin >/dev/null || ./scripts/deps.sh
  if [ ! -x "$CONFAB" ]; then
    cargo build --release -p confab
  fi
  mkdir -p "$STATE"
  start_nats
  CONFAB_PG_PORT=$PG_PORT ./scripts/postgres.sh >"$STATE/database_url"
  if [ ! -s "$STATE/token_secret" ]; then
    (umask 077; openssl rand -hex 32 >"$STATE/token_secret")
  fi
  for i in $(seq 1 "$NODES"); do start_node "$i"; done
  log "up. Load it: target/release/confab-loadgen run --api http://127.0.0.1:8180 --metrics http://127.0.0.1:8190/metrics"
}

stop_pidfile() { # file signal
  if alive "$1"; then
    kill "-$2" "$(cat "$1")" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$(cat "$1")" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$1"
}

down() {
  local f
  for f in "$STATE"/node-*.pid; do [ -e "$f" ] && stop_pidfile "$f" TERM; done
  for f in "$STATE"/nats-*.pid; do [ -e "$f" ] && stop_pidfile "$f" TERM; done
  CONFAB_PG_PORT=$PG_PORT CONFAB_PG_ACTION=stop ./scripts/postgres.sh >/dev/null 2>&1 || true
  log "down (state kept in $STATE)"
}

status() {
  local f
  for f in "$STATE"/nats-*.pid "$STATE"/node-*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid): stopped"; fi
  done
  if curl -sf http://127.0.0.1:8180/v1/gateway >/dev/null 2>&1; then
    curl -s http://127.0.0.1:8180/v1/gateway
    echo
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill) stop_pidfile "$STATE/node-${2:?node number}.pid" KILL; log "node $2 killed" ;;
  start) start_node "${2:?node number}" ;;
  clean)
    down
    rm -rf "$STATE" "/var/tmp/confab-pg-$PG_PORT"
    log "removed $STATE and the cluster's PostgreSQL data"
    ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
