#!/usr/bin/env bash
# The Airflow side of the UI benchmark, end to end: set-up (bench/ui/airflow_setup.sh: Airflow 3.3.2 venv,
# fresh Postgres metadata DB, 1 DAG of 5,000 tasks + 999 small DAGs serialized, 25 finished runs per DAG
# written straight into the DB), then Airflow's API server on a loopback port, then bench/ui/airflow_time.py,
# which prints one JSON line per measurement on stdout (progress goes to stderr).
#
#   bench/ui/airflow.sh
#
# Environment: the sizes of airflow_setup.sh (AIRFLOW_UI_TASKS, AIRFLOW_UI_RUNS, AIRFLOW_UI_SMALL_DAGS, ...),
# AIRFLOW_UI_N (measured repetitions, default 10), AIRFLOW_UI_WARMUP (default 2), AIRFLOW_UI_PORT (18090),
# AIRFLOW_UI_DB (airflow_ui_bench), AIRFLOW_UI_BROWSER=1 to also time the grid page in headless Chromium
# (bench/ui/airflow_page.mjs; needs node, playwright-core and /usr/bin/chromium).
# KEEP_AIRFLOW_HOME=1 keeps the temp AIRFLOW_HOME (logs); it is also kept when something failed.
# Airflow settings are its defaults except: Postgres metadata DB, no example DAGs, all users admins
# (SimpleAuthManager), [api] maximum_page_limit 1000, and the temp AIRFLOW_HOME/DAG folder. The API server
# runs with its default single worker. Nothing else runs (no scheduler, no DAG processor).
set -euo pipefail
cd "$(dirname "$0")/../.."
port="${AIRFLOW_UI_PORT:-18090}"
log() { echo "[airflow.sh $(date +%T)] $*" >&2; }

export AIRFLOW_HOME="$(mktemp -d /tmp/airflow-ui-bench.XXXXXX)"
pid=""
cleanup() {
  local rc=$?
  # The API server was started with setsid: its pid is a process group that also holds its workers.
  if [ -n "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] || [ "${KEEP_AIRFLOW_HOME:-0}" = 1 ]; then log "logs kept in $AIRFLOW_HOME"; else rm -rf "$AIRFLOW_HOME"; fi
}
trap cleanup EXIT
trap "exit 143" INT TERM  # so that the EXIT trap also runs when interrupted

t0=$SECONDS
. bench/ui/airflow_setup.sh  # sourced: keeps its exported AIRFLOW__* settings and $AIRFLOW_VENV
log "set-up done in $((SECONDS - t0)) s"

setsid "$AIRFLOW_VENV/bin/airflow" api-server -H 127.0.0.1 -p "$port" >"$AIRFLOW_HOME/api-server.log" 2>&1 &
pid=$!; disown
deadline=$((SECONDS + 120))
until curl -sf "http://127.0.0.1:$port/api/v2/monitor/health" -o /dev/null; do
  kill -0 "$pid" 2>/dev/null || { log "the API server died"; tail -20 "$AIRFLOW_HOME/api-server.log" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { log "timed out waiting for the API server"; exit 1; }
  sleep 0.5
done
log "API server up on 127.0.0.1:$port (load average: $(cut -d' ' -f1-3 /proc/loadavg))"

timeout 3600 "$AIRFLOW_VENV/bin/python" bench/ui/airflow_time.py "http://127.0.0.1:$port"
log "load average after the API timings: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${AIRFLOW_UI_BROWSER:-0}" = 1 ]; then
  timeout 1800 node bench/ui/airflow_page.mjs "http://127.0.0.1:$port"
fi
