#!/usr/bin/env bash
# Online fetch latency and throughput: chronoflow's HTTP fetcher (embedded KV and Redis) and Feast's
# Python feature server (SQLite and Redis online stores) serving the same features for the same keys,
# measured in one run with wrk over loopback.
#
#   bench/serve.sh                     (USERS=10000 DURATION=10s LEVELS="1 8 32 64" RATE=5000)
#
# Data: a synthetic month of purchases and returns for $USERS users, read by the quickstart's configs.
# Served: GroupBy quickstart.purchases.v1 (SNAPSHOT: 10 features per key, one a list) by both; chronoflow
# alone also serves Join quickstart.training_set.v2 (its returns part is TEMPORAL: windows aggregated
# per request from the batch's rows plus replayed events), which Feast cannot compute.
# Feast gets the values chronoflow's backfill computed for the batch day, materialized into its store.
# Results: one JSON line per level in .bench/serve/results.jsonl, and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"; W="$ROOT/.bench/serve"; PY="$ROOT/.bench/feast/bin/python"
USERS=${USERS:-10000}; LEVELS=(${LEVELS:-1 8 32 64}); export DURATION=${DURATION:-10s}
RATE_TARGET=${RATE:-5000}; unset RATE
REDIS=${REDIS:-127.0.0.1:6379}; PORT=${PORT:-9100}; FEAST_PORT=${FEAST_PORT:-6566}
BATCH=2023-11-29; AT=$(( (19691 + 1) * 86400000 + 12 * 3600000 ))   # 2023-12-01 12:00 UTC (epoch day 19692)
repo=fixtures/chronon/quickstart; gb=compiled/production/group_bys/quickstart

# CHRONOFLOW_BIN skips the build (e.g. a debug binary to try the script quickly).
if [ -z "${CHRONOFLOW_BIN:-}" ]; then
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/rel}" cargo build -q --release -p chronoflow
fi
cf="${CHRONOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target/rel}/release/chronoflow}"
bench/serve/feast_setup.sh
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }

pid=""; trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; fi' EXIT   # never leave a server behind
rm -rf "$W/cf"; mkdir -p "$W/cf"
export CHRONOFLOW_WAREHOUSE="$W/cf/warehouse"
echo "== data: $USERS users, purchases and returns 2023-11-01..2023-11-30"
"$PY" bench/serve/gen_month.py "$W/cf" "$USERS"
for t in purchases returns; do "$cf" table import "data.$t" "$W/cf/$t.csv" >/dev/null; done
"$cf" run --repo "$repo" --conf "$gb/purchases.v1" --ds "$BATCH" >/dev/null 2>&1

"$cf" table export default.quickstart_purchases_v1 --ds "$BATCH" --format json > "$W/purchases_backfill.jsonl"
seq 0 $((USERS - 1)) | shuf --random-source=<(yes) > "$W/keys.txt"
echo '[{"user_id": {{KEY}}}]' > "$W/cf_body.json"
run_levels() {  # label url body
  for c in "${LEVELS[@]}"; do LABEL="$1" bench/serve/load.sh "$2" "$3" "$W/keys.txt" "$c"; done
  # Paced: the issue's operating point (closed-loop per connection; see load.sh).
  RATE="$RATE_TARGET" LABEL="$1@${RATE_TARGET}rps" bench/serve/load.sh "$2" "$3" "$W/keys.txt" 32
}
: > "$W/results.jsonl"
for kv in embedded redis; do
  if [ "$kv" = embedded ]; then export CHRONOFLOW_KV="$W/cf/kv"; else
    redis-cli -u "redis://$REDIS/5" FLUSHDB >/dev/null; export CHRONOFLOW_KV="redis://$REDIS/5"; fi
  for g in purchases returns; do
    "$cf" run --mode upload --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" 2>&1 | tail -1
    "$cf" run --mode upload-to-kv --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH" 2>&1 | tail -1
  done
  "$cf" run --mode metadata-upload --repo "$repo" --conf compiled/production/joins/quickstart/training_set.v2 2>&1 | tail -1
  "$cf" run --mode streaming --repo "$repo" --conf "$gb/returns.v1" --replay-table data.returns --since "$BATCH" 2>&1 | tail -1
  "$cf" serve --listen "127.0.0.1:$PORT" --no-fetch-log 2>/dev/null & pid=$!
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done
  "$PY" - "$W/purchases_backfill.jsonl" "http://127.0.0.1:$PORT/v1/fetch/groupby/quickstart.purchases.v1?at_millis=$AT" <<'PYEOF'
import json, sys, urllib.request
rows = {r["user_id"]: r for r in map(json.loads, open(sys.argv[1]))}
for key in sorted(rows)[:: max(1, len(rows) // 50)]:
    req = urllib.request.Request(sys.argv[2], json.dumps([{"user_id": key}]).encode(), {"Content-Type": "application/json"})
    got = json.load(urllib.request.urlopen(req))["results"][0]["features"]
    for name, expected in rows[key].items():
        if name not in ("user_id", "ds"):
            assert got[name] == expected, (key, name, got[name], expected)
print("chronoflow serves its backfill's values (sampled keys)")
PYEOF
  run_levels "chronoflow-$kv groupby" "http://127.0.0.1:$PORT/v1/fetch/groupby/quickstart.purchases.v1?at_millis=$AT" "$W/cf_body.json" | tee -a "$W/results.jsonl"
  run_levels "chronoflow-$kv join" "http://127.0.0.1:$PORT/v1/fetch/join/quickstart.training_set.v2?at_millis=$AT" "$W/cf_body.json" | tee -a "$W/results.jsonl"
  kill $pid; wait $pid 2>/dev/null || true
done

echo "== Feast 0.67: the same purchases.v1 features of $BATCH, materialized"
cp "$W/purchases_backfill.jsonl" "$W/purchases.jsonl"
"$PY" - "$W/purchases.jsonl" "$W/features.parquet" <<'PYEOF'
import json, sys, datetime
import pyarrow as pa, pyarrow.parquet as pq
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    r.pop("ds", None)
    r["event_timestamp"] = datetime.datetime(2023, 11, 29, 23, 59, tzinfo=datetime.timezone.utc)
cols = {k: [r.get(k) for r in rows] for k in rows[0]}
types = {k: (pa.list_(pa.int64()) if k.endswith("last10") else pa.float64() if "average" in k
             else pa.timestamp("us", tz="UTC") if k == "event_timestamp" else pa.int64()) for k in cols}
pq.write_table(pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()}), sys.argv[2])
print(f"{len(rows)} rows, {len(cols) - 2} features")
PYEOF
F=$("$PY" -c "import pyarrow.parquet as pq; print(','.join('\"user_features:%s\"' % n for n in pq.read_schema('$W/features.parquet').names if n not in ('user_id','event_timestamp')))")
echo "{\"features\":[$F],\"entities\":{\"user_id\":[{{KEY}}]}}" > "$W/feast_body.json"
for store in sqlite redis; do
  rm -rf "$W/repo_$store"
  # Feast's Redis store keeps a newer-or-equal timestamp's values: start from an empty database.
  redis-cli -u "redis://$REDIS/6" FLUSHDB >/dev/null
  "$PY" bench/serve/feast_repo.py "$W/features.parquet" "$W/repo_$store" "$store" "$REDIS,db=6" | tail -1
  bench/serve/feast_serve.sh "$W/repo_$store" "$FEAST_PORT" > "$W/feast_$store.log" 2>&1 & pid=$!
  until curl -sf "http://127.0.0.1:$FEAST_PORT/health" >/dev/null; do sleep 0.2; done
  # The same values: a sample of keys from Feast against chronoflow's backfill rows.
  "$PY" - "$W/purchases.jsonl" "http://127.0.0.1:$FEAST_PORT/get-online-features" "$W/feast_body.json" <<'PYEOF'
import json, sys, urllib.request
rows = {r["user_id"]: r for r in map(json.loads, open(sys.argv[1]))}
template = open(sys.argv[3]).read()
for key in sorted(rows)[:: max(1, len(rows) // 50)]:
    body = template.replace("{{KEY}}", str(key)).encode()
    req = urllib.request.Request(sys.argv[2], body, {"Content-Type": "application/json"})
    got = json.load(urllib.request.urlopen(req))
    names = got["metadata"]["feature_names"]
    values = {n: r["values"][0] for n, r in zip(names, got["results"])}
    for name, expected in rows[key].items():
        if name in ("user_id", "ds"):
            continue
        assert values[name] == expected, (key, name, values[name], expected)
print("feast serves the same values as chronoflow's backfill (sampled keys)")
PYEOF
  run_levels "feast-$store" "http://127.0.0.1:$FEAST_PORT/get-online-features" "$W/feast_body.json" | tee -a "$W/results.jsonl"
  kill $pid; wait $pid 2>/dev/null || true
done
python3 bench/serve/table.py "$W/results.jsonl"
