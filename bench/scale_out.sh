#!/usr/bin/env bash
# Scale-out benchmark: the engine benchmark's Join backfill (bench/engine/gen_data.py: EVENTS
# events over 60 days, LEFT rows over the last 7 days) triggered through the scheduler as one
# run per day (--step-days 1, 7 chunks), run by 1 and then 2 `chronoflow worker` processes
# (--slots 1 each) sharing a PostgreSQL state store and an s3:// warehouse on moto's S3 server.
# Prints the wall time from trigger to the last chunk's success for each worker count, and the
# one-process `run --mode backfill` over the same range into the same kind of warehouse.
#
#   bench/scale_out.sh [EVENTS] [LEFT_ROWS]      (defaults 2000000 and 200000)
#
# Needs the release build in target/rel (CARGO_TARGET_DIR=target/rel cargo build --release -p
# chronoflow), or CHRONOFLOW_BIN; PostgreSQL at DATABASE_URL (psql creates a fresh database per
# configuration); python3 (moto[server] into .ci-cache/, pyarrow + numpy into .bench/ on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-2000000}"
left="${2:-200000}"
cf="${CHRONOFLOW_BIN:-$PWD/target/rel/release/chronoflow}"
if [ ! -x "$cf" ]; then
  echo "no release binary at $cf: build it with" >&2
  echo "  CARGO_TARGET_DIR=target/rel cargo build --release -p chronoflow" >&2
  exit 2
fi
base_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
work="$PWD/.bench/scale-out-$events"
mkdir -p "$work"

venv="$PWD/.bench/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q duckdb==2.0.0 pyarrow numpy
fi
if [ ! -f "$work/events.parquet" ]; then
  "$venv/bin/python" bench/engine/gen_data.py "$work" --events "$events" --left "$left"
fi
moto="${MOTO_SERVER_BIN:-$PWD/.ci-cache/moto-5.2.5/bin/moto_server}"
if [ ! -x "$moto" ]; then
  python3 -m venv "$PWD/.ci-cache/moto-5.2.5"
  "$PWD/.ci-cache/moto-5.2.5/bin/pip" install -q 'moto[server]==5.2.5'
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port" && break; sleep 0.1; done
export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
unset RUST_LOG

# A fresh bucket with the inputs imported; prints the warehouse URI.
fresh_warehouse() {
  curl -sf -X PUT "http://127.0.0.1:$port/$1" >/dev/null
  CHRONOFLOW_WAREHOUSE="s3://$1/warehouse" "$cf" table import data.events "$work/events.parquet" >/dev/null
  CHRONOFLOW_WAREHOUSE="s3://$1/warehouse" "$cf" table import data.left "$work/left.parquet" >/dev/null
  echo "s3://$1/warehouse"
}

now() { date +%s.%N; }
range=(--start-ds 2024-02-23 --end-ds 2024-02-29)

echo "== one process: run --mode backfill --step-days 1 into s3://"
export CHRONOFLOW_WAREHOUSE
CHRONOFLOW_WAREHOUSE=$(fresh_warehouse single)
/usr/bin/time -f "1 process: %e s wall, %U s user, peak %M KB" \
  "$cf" run --mode backfill --repo "$work/repo" --conf production/joins/bench/training.v1 \
  "${range[@]}" --step-days 1

for workers in 1 2; do
  echo "== scheduler + $workers worker(s), 7 chunk runs"
  db="chronoflow_scale_out_bench_$workers"
  psql -q "$base_url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  export CHRONOFLOW_DATABASE_URL="${base_url%/*}/$db"
  CHRONOFLOW_WAREHOUSE=$(fresh_warehouse "workers-$workers")
  "$cf" dags sync --repo "$work/repo" >/dev/null
  "$cf" dags pause --all >/dev/null
  "$cf" dags unpause chronon_join_backfill >/dev/null
  procs=()
  for i in $(seq "$workers"); do
    CHRONOFLOW_HOME="$work/home-$workers-$i" CHRONOFLOW_KV="$work/home-$workers-$i/kv" \
      "$cf" worker --repo "$work/repo" --id "worker-$i" --slots 1 2>"$work/worker-$workers-$i.log" &
    procs+=($!)
  done
  CHRONOFLOW_HOME="$work/home-$workers-s" "$cf" scheduler --repo "$work/repo" --tick-ms 100 \
    2>"$work/scheduler-$workers.log" &
  procs+=($!)
  pids+=("${procs[@]}")
  sleep 2
  started=$(now)
  "$cf" dags trigger chronon_join_backfill "${range[@]}" --step-days 1 >/dev/null
  while :; do
    states=$("$cf" runs list --dag chronon_join_backfill --format json \
      | python3 -c 'import json,sys; print(" ".join(r["state"] for r in json.load(sys.stdin)["runs"]))')
    case " $states " in *" failed "*) echo "a chunk failed: $states" >&2; exit 1 ;; esac
    if [ -z "$(echo "$states" | tr ' ' '\n' | grep -v '^success$')" ] && [ -n "$states" ]; then break; fi
    sleep 0.2
  done
  ended=$(now)
  python3 -c "print(f'$workers worker(s): {($ended - $started):.1f} s wall for 7 chunks, {$left / ($ended - $started):,.0f} left rows/s')"
  kill "${procs[@]}" 2>/dev/null || true
  wait "${procs[@]}" 2>/dev/null || true
done
