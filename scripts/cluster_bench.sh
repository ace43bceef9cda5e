#!/usr/bin/env bash
# What a cluster costs on this box: 1, 2 and 3 confab nodes (three NATS
# servers with JetStream, R=3, in every case) on loopback, each driven by
# the load generator at the same fixed rate of the dau50m mix. Every
# process shares the same cores, so the figures to compare are CPU per
# message (all confab nodes together, and the NATS servers), not msgs/s.
# Prints one markdown row per cluster size (docs/benchmarks.md, "Cluster").
#
#   scripts/cluster_bench.sh [RATE] [SECONDS] [SCALE]   (defaults 200, 20, 0.00002:
#                                                        1,000 users, 1,500 connections)
#
# Needs the release binaries (target/release/confab, confab-loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE="${1:-200}"
SECONDS_MEASURED="${2:-20}"
SCALE="${3:-0.00002}"
STATE="${CONFAB_CLUSTER_DIR:-target/cluster}"
LOADGEN="${CONFAB_LOADGEN_BIN:-target/release/confab-loadgen}"

echo "| nodes | msgs/s acked | ack p50 / p99 ms | delivery p50 / p99 ms | confab CPU µs/msg (all nodes) | NATS CPU µs/msg (3 servers) | load generator µs/msg | lost / dup / gaps |"
echo "|---|---|---|---|---|---|---|---|"
row() { # json, label
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda v: "–" if v is None else f"{v:.0f}"
ms = lambda k: f"{r[k] / 1000:.1f}"
print(f"| {sys.argv[2]} | {r['msgs_per_s']:.0f} | {ms('ack_p50_us')} / {ms('ack_p99_us')} "
      f"| {ms('delivery_p50_us')} / {ms('delivery_p99_us')} "
      f"| {f(r['server_cpu_us_per_msg'])} | {f(r.get('others_cpu_us_per_msg'))} "
      f"| {f(r['loadgen_cpu_us_per_msg'])} | {r['lost']} / {r['duplicated']} / {r['gaps']} |")
PY
}

# The baseline: one node without a cluster (no NATS, its own SQLite).
./scripts/cluster.sh clean >/dev/null 2>&1 || true
mkdir -p "$STATE"
"${CONFAB_BIN:-target/release/confab}" serve --data-dir "$STATE/single" \
  --api-addr 127.0.0.1:8180 --ws-addr 127.0.0.1:8181 --quic-addr 127.0.0.1:8143 \
  --metrics-addr 127.0.0.1:8190 >"$STATE/single.log" 2>&1 &
single=$!
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:8180/readyz >/dev/null && break; sleep 0.1; done
"$LOADGEN" run --api http://127.0.0.1:8180 --metrics http://127.0.0.1:8190/metrics \
  --profile dau50m --scale "$SCALE" --rate "$RATE" --duration "$SECONDS_MEASURED" --warmup 5 \
  --transport ws --quiet --json "$STATE/bench-0.json" >/dev/null 2>&1 || true
kill "$single"
wait "$single" || true
row "$STATE/bench-0.json" "1, no cluster"

for n in 1 2 3; do
  ./scripts/cluster.sh clean >/dev/null 2>&1 || true
  CONFAB_CLUSTER_NODES=$n ./scripts/cluster.sh up >/dev/null 2>&1
  metrics=$(seq 1 "$n" | sed 's|.*|http://127.0.0.1:8&90/metrics|' | paste -sd,)
  pids=$(cat "$STATE"/nats-*.pid | paste -sd,)
  "$LOADGEN" run --api http://127.0.0.1:8180 --metrics "$metrics" --pids "$pids" \
    --profile dau50m --scale "$SCALE" --rate "$RATE" --duration "$SECONDS_MEASURED" --warmup 5 \
    --transport ws --quiet --json "$STATE/bench-$n.json" >/dev/null 2>&1 || true
  ./scripts/cluster.sh down >/dev/null 2>&1
  row "$STATE/bench-$n.json" "$n"
done
