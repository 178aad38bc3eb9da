#!/usr/bin/env bash
# The engine benchmark: a Join backfill over 10M events and 1M left rows (100k keys; SUM, COUNT,
# AVERAGE over 3d/14d/30d and LAST_K(10); one SNAPSHOT and one TEMPORAL part), computed by chronoflow
# and, side by side on the same Parquet files, by DuckDB with SQL written from SPEC §4; then every
# value of the two results is compared.
#
#   bench/engine.sh [EVENTS] [LEFT_ROWS]      (defaults 10000000 and 1000000)
#
# Needs a Rust toolchain and python3 (DuckDB 2.0, pyarrow and numpy are installed from PyPI into
# .bench/duckdb-venv on first use). The release build of chronoflow takes ~20 minutes cold.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-10000000}"
left="${2:-1000000}"
work="$PWD/.bench/engine-$events"
venv="$PWD/.bench/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q duckdb==2.0.0 pyarrow numpy
fi
cargo build -q --release -p chronoflow
cf="$PWD/target/release/chronoflow"

if [ ! -f "$work/events.parquet" ]; then
  "$venv/bin/python" bench/engine/gen_data.py "$work" --events "$events" --left "$left"
fi
export CHRONOFLOW_WAREHOUSE="$work/warehouse"
rm -rf "$CHRONOFLOW_WAREHOUSE"
/usr/bin/time -f "import events: %e s, peak %M KB" "$cf" table import data.events "$work/events.parquet"
/usr/bin/time -f "import left: %e s, peak %M KB" "$cf" table import data.left "$work/left.parquet"

echo "== chronoflow: Join backfill of 7 left partitions"
/usr/bin/time -f "chronoflow: %e s wall, %U s user, peak %M KB" \
  "$cf" run --mode backfill --repo "$work/repo" --conf production/joins/bench/training.v1 \
  --start-ds 2024-02-23 --end-ds 2024-02-29 --step-days 7

echo "== DuckDB 2.0, same Parquet files, SQL from SPEC §4"
/usr/bin/time -f "duckdb process: %e s wall, peak %M KB" \
  "$venv/bin/python" bench/engine/duckdb_join.py "$work" "$CHRONOFLOW_WAREHOUSE/default/bench_training_v1/*/*.parquet"
