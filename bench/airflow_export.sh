#!/usr/bin/env bash
# The Airflow export benchmark, on the synthetic repo of bench/plan.sh (10,000 configs):
#   1. `chronoflow plan` (process start to exit),
#   2. `chronoflow export airflow` (process start to exit) and the size of what it writes,
#   3. Apache Airflow 3.3.2 parsing the exported DAG files (DagBag),
#   4. Apache Airflow parsing the hand-written dynamic DAG file of the same repo
#      (bench/airflow/chronon_dags.py, what Chronon's helpers do today).
#
#   bench/airflow_export.sh [CONFIGS] [RUNS]        (defaults 10000 and 5)
#
# Needs a release build (`cargo build --release -p chronoflow -p chronoflow-bench` into target/rel,
# the benchmarks' release dir, or CARGO_TARGET_DIR; this script runs it) and python3; Airflow goes
# into .bench/airflow-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
configs="${1:-10000}"
runs="${2:-5}"
work=".bench"
repo="$work/repo-$configs"
out="$work/airflow-export-$configs"
mkdir -p "$work"

rel="${CARGO_TARGET_DIR:-$PWD/target/rel}/release"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/rel}" cargo build --release -q -p chronoflow -p chronoflow-bench
[ -d "$repo" ] || "$rel/gen-repo" "$repo" --configs "$configs"
echo "repo: $(find "$repo" -type f | wc -l) files"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %.0f ms, min %.0f, max %.0f (%d runs)\n", m*1000, a[1]*1000, a[NR]*1000, NR}'; }
echo
printf '%-40s ' "chronoflow plan --format json:"
for _ in $(seq "$runs"); do
  /usr/bin/time -f "%e" "$rel/chronoflow" plan --repo "$repo" --format json -o "$work/plan.json" 2>&1 >/dev/null | tail -1
done | median
printf '%-40s ' "chronoflow export airflow:"
for _ in $(seq "$runs"); do
  /usr/bin/time -f "%e" "$rel/chronoflow" export airflow --repo "$repo" --out "$out" 2>&1 >/dev/null | tail -1
done | median
echo "exported: $(find "$out" -name '*.py' | wc -l) files, $(du -sh "$out" | cut -f1)"

venv="$work/airflow-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q apache-airflow==3.3.2
fi
export AIRFLOW_HOME="$PWD/$work/airflow-home"
mkdir -p "$AIRFLOW_HOME"
echo
echo "== Apache Airflow 3.3.2 parsing the exported DAG files"
"$venv/bin/python" bench/airflow/time_folder.py "$out" "$runs" 2>/dev/null | tail -1
# The hand-written file builds only the team batch, Join and StagingQuery DAGs: the same DAGs of
# the export, parsed alone, are the like-for-like comparison.
same="$out-same-dags"
rm -rf "$same" && mkdir -p "$same"
cp "$out"/chronon_gb_batch_*.py "$out"/chronon_join_*.py "$out"/chronon_staging_query_*.py "$same"/
rm -f "$same"/chronon_join_backfill.py "$same"/chronon_join_ooc_*.py
echo "== Apache Airflow 3.3.2 parsing the exported files of the DAGs the hand-written file builds"
"$venv/bin/python" bench/airflow/time_folder.py "$same" "$runs" 2>/dev/null | tail -1
echo "== Apache Airflow 3.3.2 parsing the hand-written dynamic DAG file (bench/airflow/chronon_dags.py)"
CHRONON_REPO="$PWD/$repo" "$venv/bin/python" bench/airflow/time_dagbag.py "$runs" 2>/dev/null | tail -1
