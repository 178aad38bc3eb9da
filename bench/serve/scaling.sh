#!/usr/bin/env bash
# Fetch scaling: time and peak memory of one request of N key sets of the quickstart Join
# (quickstart/training_set.v2, distinct user ids), against a fresh `chronoflow serve` per N so the
# peak RSS is that request's. The key-set cap is lifted for the measurement.
#
#   bench/serve/scaling.sh                        (debug build; PROFILE=release for an optimized one)
#   NS="1000 5000 20000 100000" bench/serve/scaling.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
profile="${PROFILE:-debug}"
if [ "$profile" = release ]; then cargo build -q --release -p chronoflow; else cargo build -q -p chronoflow; fi
cf="$PWD/target/$profile/chronoflow"
repo=fixtures/chronon/quickstart
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
export CHRONOFLOW_WAREHOUSE="$dir/warehouse" CHRONOFLOW_KV="$dir/kv"
port="${PORT:-9393}"

{
  for t in purchases returns users; do "$cf" table import "data.$t" "$repo/data/$t.csv"; done
  for gb in purchases returns; do
    conf="compiled/production/group_bys/quickstart/$gb.v1"
    "$cf" run --mode upload --repo "$repo" --conf "$conf" --ds 2023-11-29
    "$cf" run --mode upload-to-kv --repo "$repo" --conf "$conf" --ds 2023-11-29
  done
  "$cf" run --mode metadata-upload --repo "$repo" --conf compiled/production/joins/quickstart/training_set.v2
  "$cf" run --mode streaming --repo "$repo" --conf compiled/production/group_bys/quickstart/returns.v1 \
    --replay-table data.returns --since 2023-11-29
} >/dev/null 2>&1

for n in ${NS:-1000 5000 20000 40000 100000}; do
  python3 -c "import json,sys; print(json.dumps([{'user_id': i} for i in range(int(sys.argv[1]))]))" "$n" >"$dir/body.json"
  "$cf" serve --listen "127.0.0.1:$port" --no-fetch-log --max-keys-per-request 10000000 \
    --max-body-bytes 1000000000 --request-timeout-secs 3600 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  took=$(curl -s -o /dev/null -w "%{time_total}" -X POST -H 'Content-Type: application/json' \
    --data-binary @"$dir/body.json" \
    "http://127.0.0.1:$port/v1/fetch/join/quickstart/training_set.v2?at_millis=1701374234059")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 -c "import sys; n,t,r=int(sys.argv[1]),float(sys.argv[2]),int(sys.argv[3]); print(f'{n:>7} key sets  {t:6.2f} s  {t/n*1e6:4.0f} us/key set  peak RSS {r/1024:5.0f} MB')" "$n" "$took" "$rss"
done
