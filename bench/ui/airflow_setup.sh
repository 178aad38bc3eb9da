#!/usr/bin/env bash
# Set-up of the Airflow side of the UI benchmark: the Airflow venv, a fresh metadata database, the DAG files,
# their serialization into the DB, and the finished runs and task instances (bench/ui/airflow_populate.py).
#
#   bench/ui/airflow_setup.sh           (or sourced by bench/ui/airflow.sh, which keeps the exported settings)
#
# Reuses the venv of the scheduler benchmark (.bench/airflow: apache-airflow 3.3.2, psycopg2-binary, asyncpg,
# from PyPI) and installs it there if missing. The database $AIRFLOW_UI_DB (default airflow_ui_bench) on the
# local PostgreSQL (PGHOST/PGPORT/PGUSER, default 127.0.0.1:5432 postgres, no password) is dropped and
# recreated. AIRFLOW_HOME defaults to .bench/airflow-ui-home (git-ignored); airflow.sh passes a temp one.
# Sizes: AIRFLOW_UI_TASKS (5000 tasks in the big DAG, in chains of AIRFLOW_UI_CHAIN=5), AIRFLOW_UI_RUNS (25
# runs per DAG), AIRFLOW_UI_SMALL_DAGS (999 small DAGs of AIRFLOW_UI_SMALL_TASKS=5, so 1,000 DAGs in all).
# Progress goes to stderr, with the seconds each step took.
set -euo pipefail
_ui_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export AIRFLOW_UI_TASKS="${AIRFLOW_UI_TASKS:-5000}" AIRFLOW_UI_CHAIN="${AIRFLOW_UI_CHAIN:-5}"
export AIRFLOW_UI_RUNS="${AIRFLOW_UI_RUNS:-25}" AIRFLOW_UI_SMALL_DAGS="${AIRFLOW_UI_SMALL_DAGS:-999}"
export AIRFLOW_UI_SMALL_TASKS="${AIRFLOW_UI_SMALL_TASKS:-5}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
AIRFLOW_UI_DB="${AIRFLOW_UI_DB:-airflow_ui_bench}"
AIRFLOW_VENV="${AIRFLOW_VENV:-$_ui_root/.bench/airflow}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$_ui_root/.bench/airflow-ui-home}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://$PGUSER@$PGHOST:$PGPORT/$AIRFLOW_UI_DB"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$AIRFLOW_HOME/dags"
# SimpleAuthManager (the 3.x default) with everyone an admin: GET /auth/token hands out a JWT without a login.
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
# So that the whole DAG list can be asked for in one call (the default cap is 100 per page).
export AIRFLOW__API__MAXIMUM_PAGE_LIMIT="${AIRFLOW__API__MAXIMUM_PAGE_LIMIT:-1000}"
_ui_log() { echo "[airflow_setup $(date +%T)] $*" >&2; }

_t=$SECONDS
if [ ! -x "$AIRFLOW_VENV/bin/airflow" ] || ! "$AIRFLOW_VENV/bin/python" -c 'import psycopg2, asyncpg' 2>/dev/null; then
  _ui_log "installing apache-airflow 3.3.2 into $AIRFLOW_VENV"
  python3 -m venv "$AIRFLOW_VENV"
  timeout 900 "$AIRFLOW_VENV/bin/pip" install -q --upgrade pip
  timeout 900 "$AIRFLOW_VENV/bin/pip" install -q apache-airflow==3.3.2 psycopg2-binary asyncpg
fi
_ui_log "airflow $("$AIRFLOW_VENV/bin/python" -c 'import airflow; print(airflow.__version__)') in $AIRFLOW_VENV ($((SECONDS - _t)) s)"

mkdir -p "$AIRFLOW_HOME/dags"
rm -f "$AIRFLOW_HOME"/dags/*.py
cp "$_ui_root/bench/ui/airflow_dags.py" "$AIRFLOW_HOME/dags/ui_big.py"
[ "$AIRFLOW_UI_SMALL_DAGS" -gt 0 ] && cp "$_ui_root/bench/ui/airflow_dags.py" "$AIRFLOW_HOME/dags/ui_small.py"

_t=$SECONDS
PGOPTIONS="-c client_min_messages=warning" psql -d postgres -qc "drop database if exists $AIRFLOW_UI_DB" \
  -c "create database $AIRFLOW_UI_DB"
timeout 300 "$AIRFLOW_VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 \
  || { tail -20 "$AIRFLOW_HOME/migrate.log" >&2; exit 1; }
_ui_log "fresh database $AIRFLOW_UI_DB migrated ($((SECONDS - _t)) s)"

_t=$SECONDS
timeout 900 "$AIRFLOW_VENV/bin/airflow" dags reserialize >"$AIRFLOW_HOME/reserialize.log" 2>&1 \
  || { tail -20 "$AIRFLOW_HOME/reserialize.log" >&2; exit 1; }
_n=$(psql -d "$AIRFLOW_UI_DB" -Atc "select count(*) from serialized_dag")
[ "$_n" = $((AIRFLOW_UI_SMALL_DAGS + 1)) ] || { _ui_log "expected $((AIRFLOW_UI_SMALL_DAGS + 1)) serialized DAGs, got $_n"; exit 1; }
_ui_log "$_n DAGs serialized by 'airflow dags reserialize' ($((SECONDS - _t)) s)"

_t=$SECONDS
timeout 900 "$AIRFLOW_VENV/bin/python" "$_ui_root/bench/ui/airflow_populate.py" 2>"$AIRFLOW_HOME/populate.log" >&2 \
  || { tail -20 "$AIRFLOW_HOME/populate.log" >&2; exit 1; }
_ui_log "runs and task instances inserted ($((SECONDS - _t)) s)"
