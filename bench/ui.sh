#!/usr/bin/env bash
# The web UI benchmark: chronoflow (SQLite and PostgreSQL) and Apache Airflow 3.3 (PostgreSQL) serving the
# same shape — one DAG of 5,000 tasks and 999 small DAGs, 25 finished runs each — in one run: the grid's
# and the DAG list's API calls, and the grid page in headless Chromium. Prints the JSON lines, then a table
# with ratios. Results and method: BENCHMARKS.md ("Web UI").
#
#   bench/ui.sh            (about 15 minutes: most of it is Airflow's install, serialization and populate)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${UI_BENCH_OUT:-.bench/ui-results.jsonl}"
mkdir -p "$(dirname "$out")"
: >"$out"
export CHRONOFLOW_UI_BROWSER=1 AIRFLOW_UI_BROWSER=1
bench/ui/chronoflow.sh | tee -a "$out"
CHRONOFLOW_UI_DATABASE_URL="${CHRONOFLOW_UI_PG_URL:-postgres://postgres@127.0.0.1:5432/chronoflow_ui_bench}" \
  CHRONOFLOW_UI_BROWSER=0 bench/ui/chronoflow.sh | tee -a "$out"
bench/ui/airflow.sh | tee -a "$out"
python3 bench/ui/table.py "$out"
