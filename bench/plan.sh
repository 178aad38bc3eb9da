#!/usr/bin/env bash
# The planning benchmark: `check` + `plan` on a synthetic repo of 10,000 configs, side by side with
# Apache Airflow parsing the same repo's DAGs the way Chronon's Airflow helpers build them.
#
#   bench/plan.sh [CONFIGS] [RUNS]        (defaults 10000 and 10)
#
# Needs: a Rust toolchain; for the Airflow side, python3 (Airflow 3.3.2 is installed from PyPI into
# .bench/airflow-venv on first use; set SKIP_AIRFLOW=1 to skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
configs="${1:-10000}"
runs="${2:-10}"
work=".bench"
repo="$work/repo-$configs"
mkdir -p "$work"

cargo build --release -q -p chronoflow -p chronoflow-bench
target/release/gen-repo "$repo" --configs "$configs"
echo "repo: $(du -sh "$repo" | cut -f1), $(find "$repo" -type f | wc -l) files"

echo
echo "== chronoflow, in-process phases"
target/release/bench-plan "$repo" --runs "$runs"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %.0f ms, min %.0f, max %.0f (%d runs)\n", m*1000, a[1]*1000, a[NR]*1000, NR}'; }
echo
echo "== chronoflow, end to end (process start to exit)"
for cmd in "check" "plan --format json -o $work/plan.json"; do
  printf '%-40s ' "chronoflow $cmd:"
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e" target/release/chronoflow $cmd --repo "$repo" 2>&1 >/dev/null | tail -1
  done | median
done
printf '%-40s ' "peak memory (plan):"
/usr/bin/time -f "%M KB" target/release/chronoflow plan --repo "$repo" --format json -o "$work/plan.json" 2>&1 | tail -1

if [ "${SKIP_AIRFLOW:-0}" != 1 ]; then
  venv="$work/airflow-venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q apache-airflow==3.3.2
  fi
  echo
  echo "== Apache Airflow 3.3.2: DagBag parse of Chronon-style DAGs for the same repo"
  export AIRFLOW_HOME="$PWD/$work/airflow-home"
  mkdir -p "$AIRFLOW_HOME"
  CHRONON_REPO="$PWD/$repo" "$venv/bin/python" bench/airflow/time_dagbag.py "$(( runs < 3 ? runs : 3 ))" 2>/dev/null | tail -1
fi
