#!/usr/bin/env bash
# Upload at scale: wall time and peak RSS of `run --mode upload` and `run --mode upload-to-kv`
# (embedded store) for the quickstart's purchases.v1 (SNAPSHOT) and returns.v1 (TEMPORAL: tiles)
# over KEYS distinct users.
#
#   bench/serve/upload_scale.sh                  KEYS=10000000 GROUP_BYS="purchases returns"
#   CHRONOFLOW_BIN=path bench/serve/upload_scale.sh
#
# Data (bench/serve/gen_keys.py, numpy, seeded): one event per user in data.purchases and in
# data.returns, on a random day of 2023-11-01..29, written as Parquet and imported. Each step is
# timed by /usr/bin/time (wall, peak RSS). Then a fetch of a few users checks the KV serves them.
# Output: one JSON line per step in .bench/serve/upload_scale.jsonl (appended) and on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"; W="${WORK:-$ROOT/.bench/upload-scale}"
KEYS=${KEYS:-10000000}; GROUP_BYS=(${GROUP_BYS:-purchases returns})
BATCH=2023-11-29; AT=$(( (19690 + 1) * 86400000 + 12 * 3600000 ))   # 2023-11-30 12:00 UTC
repo=fixtures/chronon/quickstart; gb=compiled/production/group_bys/quickstart
PY="${PYTHON:-$ROOT/.bench/duckdb-venv/bin/python}"   # needs numpy and pyarrow

if [ -z "${CHRONOFLOW_BIN:-}" ]; then
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/rel}" cargo build -q --release -p chronoflow
fi
cf="${CHRONOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target/rel}/release/chronoflow}"
rm -rf "$W"; mkdir -p "$W" "$ROOT/.bench/serve"
export CHRONOFLOW_WAREHOUSE="$W/warehouse" CHRONOFLOW_KV="$W/kv"

step() {  # label command...: runs it under /usr/bin/time, prints a JSON line
  local label="$1"; shift
  /usr/bin/time -f '%e %M' -o "$W/time" "$@" > "$W/step.log" 2>&1 || { cat "$W/step.log" >&2; exit 1; }
  read -r wall rss < "$W/time"
  echo "{\"label\":\"$label\",\"keys\":$KEYS,\"wall_s\":$wall,\"peak_rss_mb\":$((rss / 1024))}" \
    | tee -a "$ROOT/.bench/serve/upload_scale.jsonl"
}

"$PY" bench/serve/gen_keys.py "$W" "$KEYS"
for t in purchases returns; do step "import data.$t" "$cf" table import "data.$t" "$W/$t.parquet"; done
rm -f "$W"/*.parquet
for g in "${GROUP_BYS[@]}"; do
  step "upload $g.v1" "$cf" run --mode upload --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH"
  step "upload-to-kv $g.v1" "$cf" run --mode upload-to-kv --repo "$repo" --conf "$gb/$g.v1" --ds "$BATCH"
  du -sh "$W/kv" | sed "s/^/kv store after $g.v1: /"
  # The last user's features, fetched from the store just loaded.
  "$cf" fetch -t group-by -n "quickstart.$g.v1" -k "{\"user_id\": $((KEYS - 1))}" --at-millis "$AT" | head -c 300; echo
done
