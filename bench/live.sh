#!/usr/bin/env bash
# bench/live.sh: the live stream under load, on this machine, with loopback only.
#
# What it measures (shared PRODUCT.md, "Live"): VIEWERS websocket viewers of /api/stream while
# senders post RATE fresh KeldairHR events a second for DURATION seconds (server/examples/live_bench.rs):
#   - acknowledgement-to-frame latency, p50 / p99 / max, over every (delivery, viewer) pair:
#     from the sender's 2xx to the viewer's frame (goal: p99 under 50 ms);
#   - frames lost: deliveries acknowledged that a viewer never got (goal: 0);
#   - the server's peak resident memory (VmHWM; goal: under 150 MiB).
# Then the same again, on a fresh server, with SLOW more viewers that never read: memory must
# stay bounded (their queue is the shared ring of --stream-queue messages) and the readers'
# latency must not move. Each run starts `hookscope serve` on a fresh SQLite file in a temp dir.
#
# Usage: bench/live.sh   (settings from the environment: VIEWERS [50] SLOW [5] RATE [2000]
#        DURATION [30] s BUILD [1])
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VIEWERS=${VIEWERS:-50}
SLOW=${SLOW:-5}
RATE=${RATE:-2000}
DURATION=${DURATION:-30}
BUILD=${BUILD:-1}
TOKEN=bench-token-1234
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HOOKSCOPE_BIN=${HOOKSCOPE_BIN:-$TARGET_DIR/release/hookscope}
CLIENT_BIN=$TARGET_DIR/release/examples/live_bench

if [[ $BUILD == 1 ]]; then
  (cd "$ROOT" && cargo build --release -p hookscope --bin hookscope --example live_bench >&2)
fi
TOP=$(mktemp -d /tmp/hookscope-live.XXXXXX)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$TOP"
}
trap cleanup EXIT

# run SLOW_VIEWERS: one server, one load; prints the client's LIVERESULT line and peak RSS.
run() {
  local dir="$TOP/run$1" port
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env -C "$ROOT" "$HOOKSCOPE_BIN" serve --listen "127.0.0.1:$port" \
    --database-url "sqlite://$dir/live.db" --token "$TOKEN" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 120); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]] && break
    sleep 0.25
  done
  local result
  result=$("$CLIENT_BIN" "http://127.0.0.1:$port" "$TOKEN" "$VIEWERS" "$1" "$RATE" "$DURATION")
  local hwm
  hwm=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  echo "$result peak_rss_mib=$hwm"
}

echo "== $VIEWERS viewers, $RATE deliveries/s for ${DURATION} s" >&2
plain=$(run 0)
echo "== the same with $SLOW more viewers that never read" >&2
with_slow=$(run "$SLOW")
python3 - "$plain" "$with_slow" <<'PY'
import sys
rows = [dict(kv.split("=") for kv in line.split()[1:]) for line in sys.argv[1:]]
print(f"{'run':<22}{'acked/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'lost':>6}{'peak MiB':>10}")
for label, r in zip(["readers only", f"+ {rows[1]['slow']} that never read"], rows):
    print(f"{label:<22}{float(r['sent_rate']):>9,.0f}{float(r['p50_ms']):>9.2f}{float(r['p99_ms']):>9.2f}"
          f"{float(r['max_ms']):>9.2f}{int(r['lost']):>6}{float(r['peak_rss_mib']):>10.1f}")
ok = all(float(r["p99_ms"]) < 50 and int(r["lost"]) == 0 and float(r["peak_rss_mib"]) < 150 for r in rows)
print("goals (p99 < 50 ms, nothing lost, < 150 MiB):", "MET" if ok else "MISSED")
PY
