#!/usr/bin/env bash
# Fetch logging and the consistency jobs at scale.
#
#   bench/consistency.sh            (USERS=10000 LOGGED=1000000 DURATION=10s LEVELS="1 32" RATE=5000)
#
# A. What logging costs on the fetch path: the Join quickstart.training_set.v2 fetched one key set
#    per request with wrk (bench/serve/load.sh), by the same server build with logging off
#    (`--no-fetch-log`) and at samplePercent 100, closed-loop at each of LEVELS and paced at RATE.
# B. The three consistency jobs on LOGGED logged fetches of one day: a Python driver sends them
#    (100 key sets per request, each request at its own time of 2023-11-30), POST /v1/log/flush
#    acknowledges them, then log-flattener, build-comparison-table and consistency-metrics-compute
#    run one after another under /usr/bin/time (wall time and peak RSS of each). No peer measures
#    online/offline consistency (Feast has no fetch log), so this part has none.
# PARTS="A B" (default) or either; ROUNDS (default 1) repeats part A, alternating the order of
# logging off and on, since this VM's timings drift between runs.
# Data: bench/serve's synthetic month of purchases and returns for $USERS users.
# Results: .bench/consistency/results.jsonl and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"; W="$ROOT/.bench/consistency"; PY="$ROOT/.bench/duckdb-venv/bin/python"
USERS=${USERS:-10000}; LOGGED=${LOGGED:-1000000}; LEVELS=(${LEVELS:-1 32})
export DURATION=${DURATION:-10s}; RATE_TARGET=${RATE:-5000}; unset RATE
PORT=${PORT:-9110}
BATCH=2023-11-29; DAY=2023-11-30; AT=$(( 19691 * 86400000 + 12 * 3600000 ))   # DAY 12:00 UTC (epoch day 19691)
JOIN=compiled/production/joins/quickstart/training_set.v2; gb=compiled/production/group_bys/quickstart

if [ -z "${CHRONOFLOW_BIN:-}" ]; then
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/rel}" cargo build -q --release -p chronoflow
fi
cf="${CHRONOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target/rel}/release/chronoflow}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
if [ ! -x "$PY" ]; then  # the engine benchmark's venv
  python3 -m venv "$ROOT/.bench/duckdb-venv" && "$PY" -m pip install -q --upgrade pip && "$PY" -m pip install -q duckdb==2.0.0 pyarrow numpy
fi

pid=""; trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; fi' EXIT
rm -rf "$W"; mkdir -p "$W"
export CHRONOFLOW_WAREHOUSE="$W/warehouse" CHRONOFLOW_KV="$W/kv"
# The quickstart repo with the Join logging every fetch and checking consistency.
repo="$W/repo"; cp -r fixtures/chronon/quickstart "$repo"
"$PY" - "$repo/$JOIN" <<'PYEOF'
import json, sys
p = sys.argv[1]; v = json.load(open(p))
v["metaData"]["samplePercent"] = 100.0
v["metaData"]["customJson"] = json.dumps({"check_consistency": True, "lag": 0})
json.dump(v, open(p, "w"))
PYEOF

echo "== data: $USERS users, purchases and returns 2023-11-01..$DAY"
"$PY" bench/serve/gen_month.py "$W" "$USERS"
for t in purchases returns; do "$cf" table import "data.$t" "$W/$t.csv" >/dev/null; done
for g in purchases returns; do
  "$cf" run --mode upload --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" 2>&1 | tail -1
  "$cf" run --mode upload-to-kv --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" 2>&1 | tail -1
done
"$cf" run --mode metadata-upload --repo "$repo" --conf "$JOIN" 2>&1 | tail -1
"$cf" run --mode streaming --repo "$repo" --conf "$gb/returns.v1" --replay-table data.returns --since "$BATCH" 2>&1 | tail -1

serve() {  # extra flags...
  "$cf" serve --listen "127.0.0.1:$PORT" "$@" 2>>"$W/serve.log" & pid=$!
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

echo "== A. fetch latency, logging off vs 100%"
seq 0 $((USERS - 1)) | shuf --random-source=<(yes) > "$W/keys.txt"
echo '[{"user_id": {{KEY}}}]' > "$W/body.json"
url="http://127.0.0.1:$PORT/v1/fetch/join/quickstart.training_set.v2?at_millis=$AT"
: > "$W/results.jsonl"
ROUNDS=${ROUNDS:-1}; PARTS=${PARTS:-A B}
order=(off on)
for round in $(seq "$ROUNDS"); do
[[ "$PARTS" == *A* ]] || break
for logging in "${order[@]}"; do
  flags=(); [ "$logging" = off ] && flags=(--no-fetch-log)
  serve ${flags[@]+"${flags[@]}"}
  for c in "${LEVELS[@]}"; do
    LABEL="logging-$logging" bench/serve/load.sh "$url" "$W/body.json" "$W/keys.txt" "$c" | tee -a "$W/results.jsonl"
  done
  RATE="$RATE_TARGET" LABEL="logging-$logging@${RATE_TARGET}rps" bench/serve/load.sh "$url" "$W/body.json" "$W/keys.txt" 32 | tee -a "$W/results.jsonl"
  if [ "$logging" = on ]; then
    echo "log counters after part A: $(curl -sf -X POST "http://127.0.0.1:$PORT/v1/log/flush")"
  fi
  stop
done
order=("${order[1]}" "${order[0]}")
done
python3 bench/serve/table.py "$W/results.jsonl"
[[ "$PARTS" == *B* ]] || exit 0

echo "== B. $LOGGED logged fetches of $DAY through the three jobs"
# Part A logged into DAY too: start its log over.
rm -rf "$W/warehouse/default/quickstart_training_set_v2_log"
serve
start=$(date +%s.%N)
"$PY" - "$PORT" "$USERS" "$LOGGED" <<'PYEOF'
import http.client, json, random, sys
port, users, logged = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(11)
day = 19691 * 86400000  # 2023-11-30
conn = http.client.HTTPConnection("127.0.0.1", port)
per = 100
for i in range(logged // per):
    body = json.dumps([{"user_id": rnd.randrange(users)} for _ in range(per)])
    at = day + rnd.randrange(86400000)
    conn.request("POST", f"/v1/fetch/join/quickstart.training_set.v2?at_millis={at}", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
PYEOF
ack=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/log/flush")
echo "sent in $(echo "$(date +%s.%N) - $start" | bc) s; log counters: $ack"
stop
for mode in log-flattener build-comparison-table consistency-metrics-compute; do
  /usr/bin/time -f "%e %M" -o "$W/time_$mode" "$cf" run --mode "$mode" --repo "$repo" --conf "$JOIN" --ds "$DAY" > "$W/$mode.out" 2>&1
  read -r secs kb < "$W/time_$mode"
  echo "{\"label\":\"job $mode\",\"seconds\":$secs,\"peak_rss_mb\":$(( kb / 1024 ))}" | tee -a "$W/results.jsonl"
  tail -2 "$W/$mode.out"
done
