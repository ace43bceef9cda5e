#!/usr/bin/env bash
# Losing one NATS server of three under load, measured: on the loopback
# cluster of scripts/cluster.sh, the load generator drives every node while
# the NATS server that leads the replicated log's stream (or, with
# `follower`, one that does not) is killed with SIGKILL and restarted; the
# longest run of seconds in which no send was acknowledged is the writes'
# stall. The ledger must stay clean.
#
#   scripts/cluster_nats_loss.sh [leader|follower] [SECONDS]   (default leader 60)
#
# Needs jq and the release binaries (CONFAB_BIN, CONFAB_LOADGEN_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

WHICH="${1:-leader}"
SECONDS_RUN="${2:-60}"
STATE="${CONFAB_CLUSTER_DIR:-target/cluster}"
LOADGEN="${CONFAB_LOADGEN_BIN:-target/release/confab-loadgen}"
# When the server dies and how long it stays down, in seconds of the run.
KILL_AT=15
DOWN=20

log() { echo "cluster_nats_loss.sh: $*" >&2; }

case "$WHICH" in
  leader | follower) ;;
  *)
    log "leader or follower, not $WHICH"
    exit 1
    ;;
esac
if [ "$SECONDS_RUN" -lt $((KILL_AT + DOWN + 10)) ]; then
  log "SECONDS must be at least $((KILL_AT + DOWN + 10))"
  exit 1
fi
./scripts/cluster.sh clean >/dev/null 2>&1 || true
./scripts/cluster.sh up
trap './scripts/cluster.sh down' EXIT

"$LOADGEN" run --api http://127.0.0.1:8180 --metrics http://127.0.0.1:8190/metrics \
  --profile smoke --duration "$SECONDS_RUN" --transport ws \
  --json "$STATE/nats_loss.json" &
loadgen=$!
sleep "$KILL_AT"

# The stream's leader as the first server that answers sees it.
leader=""
for j in 1 2 3; do
  leader="$(curl -sf "http://127.0.0.1:$((8220 + j))/jsz?accounts=true&streams=true" |
    jq -r '.account_details[].stream_detail[]? | select(.name == "CONFAB_LOG") | .cluster.leader' |
    head -1)" && [ -n "$leader" ] && break
done
if [ -z "$leader" ]; then
  log "no server names CONFAB_LOG's leader"
  exit 1
fi
if [ "$WHICH" = leader ]; then
  victim="${leader#n}"
else
  victim=$(( ${leader#n} % 3 + 1 ))
fi
kill -9 "$(cat "$STATE/nats-$victim.pid")"
log "CONFAB_LOG's leader was $leader; NATS server $victim ($WHICH) killed at $(date +%T.%N)"
sleep "$DOWN"
./scripts/cluster.sh up >/dev/null
log "NATS server $victim back at $(date +%T.%N)"

if ! wait "$loadgen"; then
  rc=$?
  log "FAILED (load generator exit $rc); $STATE/nats_loss.json and $STATE/*.log"
  exit "$rc"
fi
# The longest run of whole seconds without an acknowledgement, once sending
# started.
jq -r '
  [.timeline[] | select(.sent > 0 or .acked > 0)] as $t
  | reduce $t[] as $s ({run: 0, best: 0, from: null, at: null};
      if $s.acked == 0 then
        .run += 1 | (if .run == 1 then .from = $s.t else . end)
        | (if .run > .best then .best = .run | .at = .from else . end)
      else .run = 0 end)
  | "no acknowledgement for \(.best) s (from t = \(.at // "-") s of the timeline)"
' "$STATE/nats_loss.json" >&2 || true
jq -r '"ack p50 \(.ack.p50_us) us, p99 \(.ack.p99_us) us, max \(.ack.max_us) us; sent \(.sent), acked \(.acked), lost \(.lost), duplicated \(.duplicated)"' \
  "$STATE/nats_loss.json" >&2 || true
log "PASSED: NATS server $victim ($WHICH) lost and back, ledger clean"
