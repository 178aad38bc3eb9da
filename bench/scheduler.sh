#!/usr/bin/env bash
# The scheduler benchmark: no-op task DAGs in two shapes, `wide` (N independent tasks) and `chain`
# (N tasks in a line), run by chronoflow's scheduler and worker on SQLite and on PostgreSQL, then by
# Apache Airflow 3.3.2 (LocalExecutor) in the same run. Prints one JSON line per system, store and shape:
# throughput (task completions per second) and dispatch latency (dependencies met -> task started).
#
#   bench/scheduler.sh                 (TASKS=10000 for chronoflow; AIRFLOW_WIDE_TASKS=1000 and
#                                       AIRFLOW_CHAIN_TASKS=200 for Airflow, which needs ~12 minutes for those)
#
# Needs a Rust toolchain, a local PostgreSQL accepting `postgres` without a password, and python3 for the
# Airflow side (installed from PyPI into .bench/airflow on first use; SKIP_AIRFLOW=1 skips it).
# Both systems run a DAG with 16 tasks at once (Airflow's default max_active_tasks_per_dag).
set -euo pipefail
cd "$(dirname "$0")/.."
tasks="${TASKS:-10000}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
db="${CHRONOFLOW_BENCH_DB:-chronoflow_bench}"

cargo build --release -q -p chronoflow-bench --bin bench-scheduler
echo "== chronoflow (scheduler + worker in one process, no-op tasks, concurrency 16, $tasks tasks)" >&2
for shape in wide chain; do
  target/release/bench-scheduler --shape "$shape" --tasks "$tasks"
done
for shape in wide chain; do
  # A fresh database per run, as the SQLite runs get a fresh file.
  psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  target/release/bench-scheduler --shape "$shape" --tasks "$tasks" \
    --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$db"
done
if [ "${SKIP_AIRFLOW:-0}" != 1 ]; then
  echo "== Apache Airflow 3.3.2 (LocalExecutor, PostgreSQL)" >&2
  bench/scheduler/airflow.sh
fi
