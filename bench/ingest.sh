#!/usr/bin/env bash
# bench/ingest.sh: ingestion benchmark, Hookscope against a bare axum handler, in one run.
#
# What it measures, and why
#   The targets of shared PRODUCT.md ("Targets that a benchmark shows"), on this 2-core machine,
#   with the load generator on the same cores and every request on 127.0.0.1:
#   1. Burst: 64 senders as fast as they can, ~1 KB KeldairHR events. Hookscope must reach
#      >= 30% of the requests/s of a bare axum handler that stores nothing
#      (server/examples/bare_ingest.rs), with a p99 acknowledgement under 10 ms as oha measures
#      it. wrk (ingest.lua: a never-seen event id on every request) gives requests/s and the
#      ratio; oha gives the p99.
#   2. Sustained: the highest fixed rate, sent open loop (oha -q: requests leave on a schedule,
#      whatever the answers do), that Hookscope holds for SUSTAIN_SECONDS with (a) every answer
#      2xx, and the answers keeping up with the schedule: oha sends >= 95% of it and its
#      latency-corrected p99 (from when a request was due to its answer) is under 1 s, (b) no
#      growing backlog: `pending` of GET /api/events (acknowledged, not listed yet), sampled
#      every second, stays under one second's worth of deliveries, does not trend upward, and
#      is 0 within DRAIN_LIMIT s of the end, and (c) every delivery listed within 1 s of its 2xx, p99: a probe posts a
#      `bench.probe` event every 200 ms and polls the list until it shows (bench/ingest_probe.py).
#      The search starts at SUSTAIN_START% of Hookscope's burst rate in the same round and steps
#      by SUSTAIN_STEP% of it: down until a rate holds, or, when the first one holds, up until
#      one does not; at most SUSTAIN_STEPS steps, each on a fresh database. It reports the
#      highest rate held.
#      Floor: the rate held >= 15% of the bare handler's burst requests/s of the same round.
#   3. Memory: Hookscope's peak resident memory (VmHWM) over the 1 KB burst (target < 100 MiB)
#      and over a burst of ~1 MiB bodies (64 senders, BIG_SECONDS; target < 300 MiB).
#   4. Durability bookkeeping: after each Hookscope run, the deliveries stored (sqlite3: select
#      count(*) from deliveries) equal the 2xx answers the load tools counted (exit 1 if not).
#   Each server is started by this script, on a fresh SQLite file in a temp dir, and stopped by it.
#
# Why rounds
#   This VM's speed drifts by 10 to 20% within minutes. ROUNDS runs the whole sequence (bare,
#   Hookscope burst, sustained search, 1 MiB burst) that many times, and the summary takes the
#   median of the rounds' ratios, so that drift does not land on one side of a ratio.
#
# Why oha draws URLs from a pattern
#   oha sends bodies drawn at random from the payload file's lines, so ids repeat and most
#   requests of a long run would be retries of a few thousand events: cheaper to index than new
#   ones. oha's URLs go to /hooks/keldair-[a-z]{2} instead: Hookscope groups by source and id, so
#   676 sources times PAYLOADS bodies make nearly every request a new event, as with wrk.
#
# Usage
#   bench/ingest.sh            run everything, print each round and the summary
#   bench/ingest.sh --help     print this header
# Settings, from the environment (defaults in brackets):
#   ROUNDS [1]  CONNECTIONS [64]  DURATION [10] s per burst run  WARMUP [2] s
#   SUSTAIN_SECONDS [60] s per sustained step (0 skips the search)  SUSTAIN_START [60] %
#   SUSTAIN_STEP [15] %  SUSTAIN_STEPS [4]  DRAIN_LIMIT [5] s
#   BIG_SECONDS [10] s of ~1 MiB bodies (0 skips it)  BIG_BYTES [1048000] (the server keeps up
#     to --max-body, 1 MiB by default)
#   PAYLOADS [20000] distinct ~1 KB bodies  WRK_THREADS [2]  BUILD [1] (0: binaries as they are)
#   KEEP [0] (1: keep the temp dir and its databases)  STRICT [0] (1: exit 3 when a floor is missed)
#   BARE_BIN, HOOKSCOPE_BIN [target/release/...]  RUST_LOG is passed to hookscope unchanged.
# Needs: cargo, python3, curl; installs oha (cargo install), wrk and sqlite3 (apt-get) if absent.
# Exit status: 0 figures printed; 1 setup failed or stored deliveries != 2xx answers;
#              3 (STRICT=1 only) a floor was missed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"

case ${1:-} in
  -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  "") ;;
  *) echo "ingest.sh takes no arguments but --help; settings come from the environment" >&2; exit 1 ;;
esac

ROUNDS=${ROUNDS:-1}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-60}
SUSTAIN_START=${SUSTAIN_START:-60}
SUSTAIN_STEP=${SUSTAIN_STEP:-15}
SUSTAIN_STEPS=${SUSTAIN_STEPS:-4}
DRAIN_LIMIT=${DRAIN_LIMIT:-5}
BIG_SECONDS=${BIG_SECONDS:-10}
BIG_BYTES=${BIG_BYTES:-1048000}
PAYLOADS=${PAYLOADS:-20000}
WRK_THREADS=${WRK_THREADS:-2}
BUILD=${BUILD:-1}
KEEP=${KEEP:-0}
STRICT=${STRICT:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BARE_BIN=${BARE_BIN:-$TARGET_DIR/release/examples/bare_ingest}
HOOKSCOPE_BIN=${HOOKSCOPE_BIN:-$TARGET_DIR/release/hookscope}
OHA_VERSION=1.16.0 # builds with this toolchain; has -Z, --rand-regex-url and JSON output
REQUEST_TIMEOUT=10 # seconds; a request slower than this counts as failed
HOOKSCOPE_TOKEN=bench-token-1234
SOURCES_PATTERN='keldair-[a-z]{2}' # oha's sources: see "Why oha draws URLs from a pattern"

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'ingest.sh: %s\n' "$*" >&2; exit 1; }
for n in ROUNDS CONNECTIONS DURATION WARMUP SUSTAIN_SECONDS SUSTAIN_START SUSTAIN_STEP \
  SUSTAIN_STEPS DRAIN_LIMIT BIG_SECONDS BIG_BYTES PAYLOADS; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 ]] || die "ROUNDS and DURATION must be at least 1"

# ---------------------------------------------------------------------------------------------
# Tools and build
# ---------------------------------------------------------------------------------------------
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "$1 is missing: apt-get install -y $1"
  apt-get install -y "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y "$1" >/dev/null; }
}
for tool in cargo python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
oha_help=$(oha --help 2>/dev/null || true)
if [[ $oha_help != *'-Z <BODY_PATH_LINES>'* || $oha_help != *'--rand-regex-url'* ]]; then
  log "installing oha $OHA_VERSION (cargo install; several minutes on 2 cores)"
  cargo install oha --locked --version "$OHA_VERSION" >&2
fi
command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
command -v sqlite3 >/dev/null || { log "installing sqlite3"; apt_install sqlite3; }

if [[ $BUILD == 1 ]]; then
  log "cargo build --release -p hookscope --bin hookscope --example bare_ingest"
  (cd "$ROOT" && cargo build --release -p hookscope --bin hookscope --example bare_ingest >&2)
fi
[[ -x $BARE_BIN ]] || die "no $BARE_BIN (build it, or set BARE_BIN)"
[[ -x $HOOKSCOPE_BIN ]] || die "no $HOOKSCOPE_BIN (build it, or set HOOKSCOPE_BIN)"

# ---------------------------------------------------------------------------------------------
# Scratch space, payloads, and cleanup of whatever this script started
# ---------------------------------------------------------------------------------------------
TOP=$(mktemp -d /tmp/hookscope-bench.XXXXXX)
SERVER_PID=""
LOAD_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [[ -n $LOAD_PID ]]; then # a subshell running timeout, which passes the signal on to oha
    pkill -TERM -P "$LOAD_PID" 2>/dev/null || true
    kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  kill_server
  if [[ $KEEP == 1 ]]; then echo "kept $TOP" >&2; else rm -rf "$TOP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SAMPLE="$ROOT/samples/keldairhr/applicant_hired.json"
[[ -f $SAMPLE ]] || die "no samples/keldairhr/applicant_hired.json"
log "generating $PAYLOADS distinct ~1 KB bodies and 4 of $BIG_BYTES bytes"
PAYLOAD_FILE="$TOP/payloads.ndjson"
BIG_FILE="$TOP/big.ndjson"
python3 "$BENCH/gen_payloads.py" "$PAYLOADS" "$SAMPLE" "$PAYLOAD_FILE"
python3 "$BENCH/gen_payloads.py" 4 "$SAMPLE" "$BIG_FILE" "$BIG_BYTES"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# Servers: one at a time, its pid in SERVER_PID, its address in PORT, its files in DIR
# ---------------------------------------------------------------------------------------------
# wait_ready LOG CHECK-CMD...: up to 60 s for CHECK-CMD to print 200.
wait_ready() {
  local log_file=$1; shift
  for _ in $(seq 1 240); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$log_file" >&2; die "the server exited at start-up"; }
    [[ $("$@" 2>/dev/null) == 200 ]] && return 0
    sleep 0.25
  done
  tail -n 30 "$log_file" >&2
  die "the server was not ready after 60 s"
}

# The figures are only worth comparing on an otherwise idle machine: say so when it is not.
check_idle() {
  local a b idle total=0 i busy
  read -ra a < <(head -n1 /proc/stat); sleep 1; read -ra b < <(head -n1 /proc/stat)
  idle=$(((b[4] + b[5]) - (a[4] + a[5])))
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  busy=$((total > 0 ? 100 * (total - idle) / total : 0))
  if [[ $busy -gt 10 ]]; then
    echo "warning: the CPUs were ${busy}% busy before $1; its figures will be low and noisy" |
      tee -a "$TOP/warnings" >&2
  fi
}

# start_bare DIR: the bare handler on a free port.
start_bare() {
  DIR=$1 PORT=$(free_port)
  mkdir -p "$DIR"
  check_idle "bare in $(basename "$(dirname "$DIR")")"
  "$BARE_BIN" "127.0.0.1:$PORT" >"$DIR/server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$DIR/server.log" curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary "@$SAMPLE" "http://127.0.0.1:$PORT/hooks/keldair"
}

# start_hookscope DIR: `hookscope serve` with default settings on a fresh database DIR/bench.db,
# run from the repository root as a user would.
start_hookscope() {
  DIR=$1 PORT=$(free_port)
  mkdir -p "$DIR"
  check_idle "hookscope in ${DIR#"$TOP"/}"
  env -C "$ROOT" "$HOOKSCOPE_BIN" serve --listen "127.0.0.1:$PORT" \
    --database-url "sqlite://$DIR/bench.db" --token "$HOOKSCOPE_TOKEN" >"$DIR/server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$DIR/server.log" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz"
}

# kill_server: SIGTERM (a graceful stop), then SIGKILL if still running after 20 s.
kill_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 80); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server $SERVER_PID did not stop within 20 s of SIGTERM; killing it" | tee -a "$TOP/warnings" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# stop_server: note the memory high-water mark in DIR/mem, stop the server, and for Hookscope
# count what is stored after the graceful stop (DIR/count.stopped), then drop the database
# unless KEEP=1: a 60 s step leaves a gigabyte or more.
stop_server() {
  grep -E '^(VmHWM|VmRSS)' "/proc/$SERVER_PID/status" >"$DIR/mem" || true
  kill_server
  if [[ -f $DIR/bench.db ]]; then
    sql "select count(*) from deliveries;" >"$DIR/count.stopped"
    [[ $KEEP == 1 ]] || rm -f "$DIR"/bench.db*
  fi
}

sql() { sqlite3 -cmd '.timeout 5000' "$DIR/bench.db" "$1"; }

# stored_count: deliveries in the database once the count has held still for 1 s (requests cut
# off at a wrk deadline may still be landing), bounded to 15 s.
stored_count() {
  local prev=-1 cur still=0
  for _ in $(seq 1 60); do
    cur=$(sql "select count(*) from deliveries;")
    if [[ $cur == "$prev" ]]; then still=$((still + 1)); else still=0; fi
    [[ $still -ge 4 ]] && break
    prev=$cur
    sleep 0.25
  done
  echo "$cur"
}

# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------
RUN=0 # numbers every wrk run, so that event ids never repeat within one invocation

# run_wrk SECONDS PAYLOADS URL OUT: as fast as 64 senders go, a fresh event id per request
# (ingest.lua); its WRKRESULT line in OUT.
run_wrk() {
  RUN=$((RUN + 1))
  BENCH_PAYLOADS="$2" BENCH_RUN=$RUN timeout $(($1 + 30)) wrk -t "$WRK_THREADS" -c "$CONNECTIONS" \
    -d "${1}s" --timeout "${REQUEST_TIMEOUT}s" -s "$BENCH/ingest.lua" "$3" >"$4"
  grep -q '^WRKRESULT ' "$4" || { cat "$4" >&2; die "wrk printed no result"; }
}

# run_oha SECONDS OUT [oha options]: bodies drawn from the payload file, URLs from
# SOURCES_PATTERN on the server at PORT; JSON summary in OUT. -w waits for the requests in flight
# at the deadline, so every request sent is counted. (In --rand-regex-url, oha takes '.' as a
# plain dot: the address needs no escaping, and must have none.)
run_oha() {
  local seconds=$1 out=$2; shift 2
  timeout $((seconds + REQUEST_TIMEOUT + 30)) oha -z "${seconds}s" -c "$CONNECTIONS" -w \
    -t "${REQUEST_TIMEOUT}s" --no-tui --output-format json -o "$out" "$@" \
    -m POST -T application/json -Z "$PAYLOAD_FILE" \
    --rand-regex-url "http://127.0.0.1:$PORT/hooks/$SOURCES_PATTERN" >/dev/null
}

report() { python3 "$BENCH/ingest_report.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# The parts of a round; each leaves its figures in files under its DIR for ingest_report.py
# ---------------------------------------------------------------------------------------------
# burst NAME: warm-up, then wrk and oha for DURATION each, on the server already started.
burst() {
  log "$1: warm-up ${WARMUP}s, then wrk ${DURATION}s and oha ${DURATION}s at $CONNECTIONS connections"
  local url="http://127.0.0.1:$PORT/hooks/keldair"
  [[ $WARMUP -gt 0 ]] && run_wrk "$WARMUP" "$PAYLOAD_FILE" "$url" "$DIR/warmup.txt"
  [[ $1 == hookscope ]] && stored_count >"$DIR/count.warmup"
  run_wrk "$DURATION" "$PAYLOAD_FILE" "$url" "$DIR/wrk.txt"
  [[ $1 == hookscope ]] && stored_count >"$DIR/count.wrk"
  run_oha "$DURATION" "$DIR/oha.json"
  [[ $1 == hookscope ]] && stored_count >"$DIR/count.oha"
  return 0
}

# after_burst: what indexing trails by once the burst stops, and how long a reader waits
# (reading, which asks the writer to index) until nothing is pending.
after_burst() {
  sql "select coalesce(max(seq), 0) - (select indexed_seq from indexing) from deliveries;" >"$DIR/backlog"
  python3 "$BENCH/ingest_probe.py" drain "http://127.0.0.1:$PORT" "$HOOKSCOPE_TOKEN" 120 >"$DIR/drain"
}

# sustain_step RATE: RATE requests/s open loop for SUSTAIN_SECONDS on a fresh Hookscope, with
# the probe and backlog sampler alongside; then how long until nothing is pending.
sustain_step() {
  local rate=$1
  echo "$rate $SUSTAIN_SECONDS" >"$DIR/rate"
  log "sustained: $rate requests/s for ${SUSTAIN_SECONDS}s (oha -q, open loop) with the probe"
  run_oha "$SUSTAIN_SECONDS" "$DIR/oha.json" -q "$rate" --latency-correction &
  LOAD_PID=$!
  python3 "$BENCH/ingest_probe.py" watch "http://127.0.0.1:$PORT" "$HOOKSCOPE_TOKEN" \
    "$SUSTAIN_SECONDS" "$DIR/probe.json" "$DIR/bench.db"
  wait "$LOAD_PID" || die "oha failed at $rate requests/s"
  LOAD_PID=""
  python3 "$BENCH/ingest_probe.py" drain "http://127.0.0.1:$PORT" "$HOOKSCOPE_TOKEN" "$DRAIN_LIMIT" >"$DIR/drain"
  stored_count >"$DIR/count"
}

# sustain_search ROUND_DIR: one step at SUSTAIN_START% of this round's Hookscope burst rate; if
# it does not hold, steps down by SUSTAIN_STEP% until one holds; if it holds, steps up until one
# does not (so the figure is the highest rate held, not just a rate held); SUSTAIN_STEPS at most.
# ingest_report.py step judges each step (exit 0 held, 2 not held, 1 stored != 2xx).
sustain_search() {
  local burst_rate pct=$SUSTAIN_START k rate verdict climbing=0
  burst_rate=$(report rate "$1/hookscope/wrk.txt")
  for k in $(seq 1 "$SUSTAIN_STEPS"); do
    rate=$((burst_rate * pct / 100))
    [[ $pct -gt 0 && $rate -gt 0 ]] || break
    start_hookscope "$1/sustain/step$k"
    sustain_step "$rate"
    stop_server
    verdict=0
    report step "$DIR" "$pct" >&2 || verdict=$?
    if [[ $verdict -eq 1 ]]; then echo 1 >"$1/mismatch"; fi
    if [[ $k -eq 1 && $verdict -ne 2 ]]; then climbing=1; fi
    if [[ $climbing -eq 1 ]]; then
      [[ $verdict -ne 2 ]] || break
      pct=$((pct + SUSTAIN_STEP))
    else
      [[ $verdict -eq 2 ]] || break
      pct=$((pct - SUSTAIN_STEP))
    fi
  done
  return 0
}

# run_round I: bare burst, Hookscope burst, sustained search, 1 MiB burst; then the round's
# report. Writes 1 to ROUND_DIR/mismatch when stored deliveries and 2xx answers disagree.
run_round() {
  local r="$TOP/round$1"
  mkdir -p "$r"
  log "round $1 of $ROUNDS"
  start_bare "$r/bare"
  burst bare
  stop_server

  start_hookscope "$r/hookscope"
  burst hookscope
  grep -E '^VmHWM' "/proc/$SERVER_PID/status" >"$DIR/mem.burst" || true # before the drain's reads
  after_burst
  stop_server

  if [[ $SUSTAIN_SECONDS -gt 0 ]]; then sustain_search "$r"; fi

  if [[ $BIG_SECONDS -gt 0 ]]; then
    start_hookscope "$r/big"
    log "big bodies: wrk ${BIG_SECONDS}s of $BIG_BYTES-byte events at $CONNECTIONS connections"
    run_wrk "$BIG_SECONDS" "$BIG_FILE" "http://127.0.0.1:$PORT/hooks/keldair" "$DIR/wrk.txt"
    stored_count >"$DIR/count"
    stop_server
  fi

  log "results of round $1 of $ROUNDS"
  report round "$r" "$CONNECTIONS" "$DURATION" "$BIG_BYTES" || echo 1 >"$r/mismatch"
}

status=0
for round in $(seq 1 "$ROUNDS"); do
  run_round "$round"
  if [[ -f $TOP/round$round/mismatch ]]; then status=1; fi
done
log "summary"
summary_status=0
report summary "$TOP" || summary_status=$?
if [[ -f $TOP/warnings ]]; then echo; cat "$TOP/warnings"; fi
# A mismatch of stored deliveries (1) outranks a missed floor (3).
if [[ $status -eq 0 && $summary_status -eq 3 && $STRICT == 1 ]]; then status=3; fi
exit "$status"
