#!/usr/bin/env bash
# Exactness check of the engine benchmark's peers at small sizes: every peer (and chronoflow, when
# its release binary exists) against the naive DuckDB SQL (duckdb_join.py, the direct translation of
# SPEC §4), on 200k events at 20/100/500 events per key and on two adversarial data sets: timestamps
# rounded to 30 min / 1 h (ties between events, with left rows and with window bounds), values 1..3
# (ties in (ts, value) for LAST_K), 30-50% late events, 10-20% null values; and a sparse set (one
# event per key on average: many keys with no event before a left row, empty windows and lists).
#
#   bench/engine/check_peers.sh            (PEERS="duckdb polars spark" to choose)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
py="$ROOT/.bench/duckdb-venv/bin/python"
PEERS=(${PEERS:-duckdb polars spark})
cf="${CHRONOFLOW_BIN:-$ROOT/target/rel/release/chronoflow}"
base="$ROOT/.bench/engine-check"
declare -A SETS=(
  [200k-20]="--events 200000 --left 20000 --keys 10000"
  [200k-100]="--events 200000 --left 20000 --keys 2000"
  [200k-500]="--events 200000 --left 20000 --keys 400"
  [ties-30min]="--events 100000 --left 10000 --keys 100 --ts-step 1800000 --late 0.3 --nulls 0.1 --value-max 4"
  [sparse]="--events 30000 --left 20000 --keys 30000 --ts-step 3600000 --late 0.5 --nulls 0.2"
  [ties-1h]="--events 100000 --left 20000 --keys 5000 --ts-step 3600000 --late 0.5 --nulls 0.2 --value-max 3"
)
fail=0
for name in $(printf '%s\n' "${!SETS[@]}" | sort); do
  d="$base/$name"
  if [ "$(cat "$d/gen_args" 2>/dev/null)" != "${SETS[$name]}" ]; then
    rm -rf "$d"; mkdir -p "$d"
    "$py" bench/engine/gen_data.py "$d" ${SETS[$name]} >/dev/null
    echo "${SETS[$name]}" >"$d/gen_args"
  fi
  "$py" bench/engine/duckdb_join.py "$d" "$d/naive.parquet" >/dev/null
  systems=()
  for p in "${PEERS[@]}"; do
    case "$p" in duckdb) s=duckdb_fast.py ;; polars) s=polars_join.py ;; spark) s=spark_join.py ;; *) echo "unknown peer $p" >&2; exit 2 ;; esac
    "$py" "bench/engine/$s" "$d" "$d/$p.parquet" >"$d/$p.log" 2>&1 || { echo "$name: $p FAILED (see $d/$p.log)"; fail=1; continue; }
    systems+=("$p")
  done
  if [ -x "$cf" ]; then
    export CHRONOFLOW_WAREHOUSE="$d/warehouse"; rm -rf "$CHRONOFLOW_WAREHOUSE"
    if "$cf" table import data.events "$d/events.parquet" >"$d/import.log" 2>&1 && "$cf" table import data.left "$d/left.parquet" >>"$d/import.log" 2>&1 &&
       "$cf" run --mode backfill --repo "$d/repo" --conf production/joins/bench/training.v1 \
         --start-ds 2024-02-23 --end-ds 2024-02-29 --step-days 7 >"$d/chronoflow.log" 2>&1; then
      systems+=(chronoflow)
    else
      echo "$name: chronoflow FAILED (see $d/chronoflow.log)"; fail=1
    fi
  fi
  for s in "${systems[@]}"; do
    got="$d/$s.parquet"; [ -d "$got" ] && got="$got/*.parquet"
    [ "$s" = chronoflow ] && got="$d/warehouse/default/bench_training_v1/*/*.parquet"
    if "$py" bench/engine/compare.py "$d/naive.parquet" "$got" >"$d/$s.compare" 2>&1; then
      echo "$name: $s identical to the naive SQL ($(grep -o '^compare.*rows,' "$d/$s.compare" | grep -o '[0-9]* / [0-9]* rows'))"
    else
      echo "$name: $s DIFFERS from the naive SQL:"; grep -v ' 0 mismatches' "$d/$s.compare" | grep -v '^RESULT' | sed 's/^/    /'
      fail=1
    fi
  done
done
exit $fail
