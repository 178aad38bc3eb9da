#!/usr/bin/env bash
# The Airflow side of the scheduler benchmark: Apache Airflow 3.3.2 with the LocalExecutor runs the no-op
# DAGs of bench/scheduler/airflow_dags.py (`wide`, then `chain`), one run each; the metrics come from the
# metadata DB (bench/scheduler/airflow_stats.py). Prints one JSON line per shape on stdout, progress on stderr.
#
#   bench/scheduler/airflow.sh          (AIRFLOW_WIDE_TASKS, AIRFLOW_CHAIN_TASKS: defaults 1000 and 200)
#
# Needs python3 (Airflow and its sync and async Postgres drivers are installed from PyPI into .bench/airflow on
# first use) and a local PostgreSQL that accepts `postgres` without a password (PGHOST/PGPORT/PGUSER to change
# it); the database $AIRFLOW_BENCH_DB (default airflow_bench) is dropped and recreated.
# Airflow settings are its defaults except: Postgres metadata DB (SQLite serializes every writer on one file
# lock, not what a LocalExecutor deployment runs), no example DAGs, a temp AIRFLOW_HOME and DAG folder, and
# the API server's port (the Execution API that task processes report to lives in the API server).
set -euo pipefail
cd "$(dirname "$0")/../.."
export AIRFLOW_WIDE_TASKS="${AIRFLOW_WIDE_TASKS:-1000}" AIRFLOW_CHAIN_TASKS="${AIRFLOW_CHAIN_TASKS:-200}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
db="${AIRFLOW_BENCH_DB:-airflow_bench}"
port="${AIRFLOW_BENCH_PORT:-18080}"
venv="${AIRFLOW_VENV:-$PWD/.bench/airflow}"
log() { echo "[airflow.sh $(date +%T)] $*" >&2; }

if [ ! -x "$venv/bin/airflow" ] || ! "$venv/bin/python" -c 'import psycopg2, asyncpg' 2>/dev/null; then
  log "installing apache-airflow 3.3.2 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q apache-airflow==3.3.2 psycopg2-binary asyncpg
fi
airflow() { "$venv/bin/airflow" "$@"; }
sql() { psql -d "$db" -Atqc "$1"; }

home="$(mktemp -d /tmp/airflow-bench.XXXXXX)"
pids=()
cleanup() {
  local rc=$?
  # Each component was started with setsid, so its pid is a process group that also holds its children
  # (LocalExecutor workers, task supervisors, API server workers).
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 30); do
    alive=0; for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  # Keep the logs when something failed (or when asked to).
  if [ "$rc" != 0 ] || [ "${KEEP_AIRFLOW_HOME:-0}" = 1 ]; then log "logs kept in $home"; else rm -rf "$home"; fi
}
trap cleanup EXIT
trap "exit 143" INT TERM  # so that the EXIT trap also runs when interrupted

export AIRFLOW_HOME="$home"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor  # the default; spelled out because it is what is measured
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://$PGUSER@$PGHOST:$PGPORT/$db"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$home/dags"
export AIRFLOW__API__PORT="$port"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$port/execution/"
mkdir -p "$home/dags"
for shape in wide chain; do cp bench/scheduler/airflow_dags.py "$home/dags/bench_$shape.py"; done

log "fresh database $db, AIRFLOW_HOME $home"
PGOPTIONS="-c client_min_messages=warning" psql -d postgres -qc "drop database if exists $db" -c "create database $db"
airflow db migrate >"$home/migrate.log" 2>&1 || { tail -20 "$home/migrate.log" >&2; exit 1; }

# The three components a LocalExecutor deployment needs to run tasks (no triggerer: nothing is deferred).
for component in scheduler dag-processor api-server; do
  setsid "$venv/bin/airflow" "$component" >"$home/$component.log" 2>&1 &
  pids+=($!); disown  # cleanup() reaps them; no job notices from bash
done

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.5 s, fails on timeout or a dead component
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@"; do
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { log "a component died"; exit 1; }; done
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out waiting for $what"; exit 1; }
    sleep 0.5
  done
}
wait_for 120 "the API server" curl -sf "http://localhost:$port/api/v2/monitor/health" -o /dev/null
parsed() { [ "$(sql "select count(*) from serialized_dag where dag_id like 'bench_%'")" = 2 ]; }
wait_for 300 "the DAGs to be parsed" parsed
log "components up, DAGs parsed"

for shape in wide chain; do
  dag="bench_$shape"
  airflow dags unpause "$dag" >>"$home/cli.log" 2>&1
  log "triggering $dag"
  airflow dags trigger "$dag" >>"$home/cli.log" 2>&1
  finished() { [ -n "$(sql "select 1 from dag_run where dag_id = '$dag' and state in ('success', 'failed')")" ]; }
  wait_for 1800 "$dag to finish" finished
  "$venv/bin/python" bench/scheduler/airflow_stats.py "$dag" "$shape"
done
