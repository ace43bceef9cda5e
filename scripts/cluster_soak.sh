#!/usr/bin/env bash
# Node kills under load on the loopback cluster of scripts/cluster.sh: the
# load generator drives every node while confab nodes are killed with
# SIGKILL and restarted on their data, one at a time, and one NATS server
# of three is killed and restarted half-way; the load generator's ledger
# must show no acknowledged message lost, duplicated or out of order.
#
#   scripts/cluster_soak.sh [KILLS] [TRANSPORT]
#
# KILLS defaults to 20, TRANSPORT (ws, wss, quic or mix: devices take the
# three in turn) to mix; `make soak` runs it with both defaults. A QUIC
# device of a killed node hears nothing until the node is back on its
# address, whose stateless reset ends the dead connection.
#
# Node 1 keeps the API the load generator signs up through and reads
# metrics from; nodes 2..N take the kills in turn. Needs the release
# binaries (target/release/confab, confab-loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS="${1:-20}"
TRANSPORT="${2:-mix}"
NODES="${CONFAB_CLUSTER_NODES:-3}"
STATE="${CONFAB_CLUSTER_DIR:-target/cluster}"
LOADGEN="${CONFAB_LOADGEN_BIN:-target/release/confab-loadgen}"
# Seconds between a kill and the restart, and between a restart and the
# next kill.
DOWN=3
UP=4

log() { echo "cluster_soak.sh: $*" >&2; }

if [ "$NODES" -lt 2 ]; then
  log "needs at least two nodes"
  exit 1
fi
./scripts/cluster.sh clean >/dev/null 2>&1 || true
./scripts/cluster.sh up
trap './scripts/cluster.sh down' EXIT

# A restart waits for the node to be ready, so a kill cycle takes longer
# than DOWN + UP: the load runs long enough for every kill to land in it.
duration=$((KILLS * (DOWN + UP + 5) + 20))
"$LOADGEN" run --api http://127.0.0.1:8180 --metrics http://127.0.0.1:8190/metrics \
  --profile smoke --duration "$duration" --transport "$TRANSPORT" \
  --ca "$STATE/node-1/tls/self-signed.crt" --json "$STATE/soak.json" &
loadgen=$!
sleep 8
for k in $(seq 1 "$KILLS"); do
  if ! kill -0 "$loadgen" 2>/dev/null; then
    log "FAILED: the load ended before kill $k; only $((k - 1)) kills were under load"
    exit 1
  fi
  node=$(( (k - 1) % (NODES - 1) + 2 ))
  ./scripts/cluster.sh kill "$node"
  if [ "$k" -eq $((KILLS / 2)) ]; then
    pid="$(cat "$STATE/nats-2.pid")"
    kill -9 "$pid"
    log "NATS server 2 killed"
  fi
  sleep "$DOWN"
  ./scripts/cluster.sh start "$node"
  if [ "$k" -eq $((KILLS / 2)) ]; then
    ./scripts/cluster.sh up >/dev/null
    log "NATS server 2 back"
  fi
  log "kill $k of $KILLS done"
  sleep "$UP"
done
if wait "$loadgen"; then
  log "PASSED: $KILLS node kills and one NATS server lost, nothing lost, duplicated or out of order"
else
  rc=$?
  log "FAILED (load generator exit $rc); $STATE/soak.json and $STATE/*.log"
  exit "$rc"
fi
