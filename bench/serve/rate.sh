#!/usr/bin/env bash
# Paced fetch latency on the embedded store at a fixed request rate (issue 16: p99 under 1 ms at
# 10,000 requests/s for the quickstart Join), without the Feast side of bench/serve.sh.
#
#   bench/serve/rate.sh                 RATE=10000 ROUNDS=3 DURATION=10s CONNS=32 USERS=10000
#   CHRONOFLOW_BIN=path bench/serve/rate.sh     (another build than target/rel's)
#   BINS="before=path/a after=path/b" bench/serve/rate.sh   (builds side by side, interleaved)
#
# Data and requests as bench/serve.sh: a synthetic month for $USERS users (gen_month.py), the
# quickstart's purchases.v1 (SNAPSHOT) and returns.v1 (TEMPORAL, replayed 2023-11-30) uploaded for
# 2023-11-29, one key set per request at 2023-12-01 12:00, keys cycling over all users.
# Then, ROUNDS times, for each build in turn (a fresh `serve` of the same store): the Join
# (POST /v1/fetch/join/quickstart.training_set.v2) and the GroupBy (POST
# /v1/fetch/groupby/quickstart.purchases.v1), each paced at $RATE by load.sh/wrk_post.lua after a
# 2 s warm-up; "server_cpu_us" is the server's CPU time per request. wrk runs on the same 2 cores
# as the server. In the first round every user's Join answer is fetched (1,000 key sets a request)
# and its digest printed (ANSWERS_SHA): builds that print the same digest give the same answers.
# Output: one JSON line per run in .bench/serve/rate.jsonl (appended) and on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"; W="$ROOT/.bench/serve-rate"
USERS=${USERS:-10000}; RATE=${RATE:-10000}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-32}
export DURATION=${DURATION:-10s}
PORT=${PORT:-9110}
BATCH=2023-11-29; AT=$(( (19691 + 1) * 86400000 + 12 * 3600000 ))   # 2023-12-01 12:00 UTC
repo=fixtures/chronon/quickstart; gb=compiled/production/group_bys/quickstart

if [ -z "${CHRONOFLOW_BIN:-}" ] && [ -z "${BINS:-}" ]; then
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/rel}" cargo build -q --release -p chronoflow
fi
cf="${CHRONOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target/rel}/release/chronoflow}"
BINS=(${BINS:-"chronoflow=$cf"}); cf="${BINS[0]#*=}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }

pid=""; trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; fi' EXIT
rm -rf "$W"; mkdir -p "$W" "$ROOT/.bench/serve"
export CHRONOFLOW_WAREHOUSE="$W/warehouse" CHRONOFLOW_KV="$W/kv"
python3 bench/serve/gen_month.py "$W" "$USERS"
for t in purchases returns; do "$cf" table import "data.$t" "$W/$t.csv" >/dev/null; done
for g in purchases returns; do
  "$cf" run --mode upload --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" >/dev/null 2>&1
  "$cf" run --mode upload-to-kv --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" >/dev/null 2>&1
done
"$cf" run --mode metadata-upload --repo "$repo" --conf compiled/production/joins/quickstart/training_set.v2 >/dev/null 2>&1
"$cf" run --mode streaming --repo "$repo" --conf "$gb/returns.v1" --replay-table data.returns --since "$BATCH" >/dev/null 2>&1
seq 0 $((USERS - 1)) | shuf --random-source=<(yes) > "$W/keys.txt"
echo '[{"user_id": {{KEY}}}]' > "$W/body.json"

JOIN="http://127.0.0.1:$PORT/v1/fetch/join/quickstart.training_set.v2?at_millis=$AT"
GROUPBY="http://127.0.0.1:$PORT/v1/fetch/groupby/quickstart.purchases.v1?at_millis=$AT"
for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    name="${bin%%=*}"
    "${bin#*=}" serve --listen "127.0.0.1:$PORT" --no-fetch-log 2>/dev/null & pid=$!
    until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done
    if [ "$round" = 1 ]; then
      python3 - "$JOIN" "$USERS" "$W/answers-$name.jsonl" "$name" <<'PYEOF'
import hashlib, json, sys, urllib.request
url, users, out, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
h = hashlib.sha256()
with open(out, "w") as f:
    for lo in range(0, users, 1000):
        body = json.dumps([{"user_id": u} for u in range(lo, min(users, lo + 1000))]).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        for r in json.load(urllib.request.urlopen(req))["results"]:
            assert r["status"] == "Success", r
            line = json.dumps(r, sort_keys=True)
            f.write(line + "\n"); h.update(line.encode())
print(f"ANSWERS_SHA {h.hexdigest()} {name} ({users} users' Join answers)")
PYEOF
    fi
    for what in join groupby; do
      url=$JOIN; [ "$what" = groupby ] && url=$GROUPBY
      CPU_PID=$pid RATE="$RATE" LABEL="$name embedded $what@${RATE}rps round $round" \
        bench/serve/load.sh "$url" "$W/body.json" "$W/keys.txt" "$CONNS" | tee -a "$ROOT/.bench/serve/rate.jsonl"
    done
    kill $pid; wait $pid 2>/dev/null || true; pid=""
  done
done
