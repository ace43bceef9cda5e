#!/usr/bin/env bash
# What a cluster costs on this box: 1, 2 and 3 confab nodes (three NATS
# servers with JetStream, R=3, in every case) on loopback, each driven by
# the load generator at the same fixed rate of the dau50m mix. Every
# process shares the same cores, so the figures to compare are CPU per
# message (all confab nodes together, and the NATS servers), not msgs/s.
# Prints one markdown row per cluster size (docs/benchmarks.md, "Cluster").
#
#   scripts/cluster_bench.sh [RATE] [SECONDS]   (defaults 500 and 20)
#
# Needs the release binaries (target/release/confab, confab-loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE="${1:-500}"
SECONDS_MEASURED="${2:-20}"
STATE="${CONFAB_CLUSTER_DIR:-target/cluster}"
LOADGEN="${CONFAB_LOADGEN_BIN:-target/release/confab-loadgen}"

echo "| nodes | msgs/s acked | ack p50 / p99 ms | delivery p50 / p99 ms | confab CPU µs/msg (all nodes) | NATS CPU µs/msg (3 servers) | load generator µs/msg | lost / dup / gaps |"
echo "|---|---|---|---|---|---|---|---|"
for n in 1 2 3; do
  ./scripts/cluster.sh clean >/dev/null 2>&1 || true
  CONFAB_CLUSTER_NODES=$n ./scripts/cluster.sh up >/dev/null 2>&1
  metrics=$(seq 1 "$n" | sed 's|.*|http://127.0.0.1:8&90/metrics|' | paste -sd,)
  pids=$(cat "$STATE"/nats-*.pid | paste -sd,)
  "$LOADGEN" run --api http://127.0.0.1:8180 --metrics "$metrics" --pids "$pids" \
    --profile dau50m --rate "$RATE" --duration "$SECONDS_MEASURED" --warmup 5 \
    --transport ws --quiet --json "$STATE/bench-$n.json" >/dev/null 2>&1 || true
  ./scripts/cluster.sh down >/dev/null 2>&1
  python3 - "$STATE/bench-$n.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["cpu"]
f = lambda v: "–" if v is None else f"{v:.0f}"
ms = lambda s, k: f"{s[k] / 1000:.1f}"
rate = r["measured_acked"] / r["duration_s"]
print(f"| {sys.argv[2]} | {rate:.0f} | {ms(r['ack'], 'p50_us')} / {ms(r['ack'], 'p99_us')} "
      f"| {ms(r['delivery'], 'p50_us')} / {ms(r['delivery'], 'p99_us')} "
      f"| {f(c['server_cpu_us_per_msg'])} | {f(c.get('others_cpu_us_per_msg'))} "
      f"| {f(c['loadgen_cpu_us_per_msg'])} | {r['lost']} / {r['duplicated']} / {r['gaps']} |")
PY
done
