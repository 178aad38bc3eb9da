#!/usr/bin/env bash
# The chronoflow side of the UI benchmark: a store with 1 DAG of 5,000 tasks and 999 small DAGs, 25
# finished runs each (bench-ui-populate), served by `chronoflow scheduler --listen`, timed by
# bench/ui/chronoflow_time.py (and, with CHRONOFLOW_UI_BROWSER=1, bench/ui/chronoflow_page.mjs).
# Prints one JSON line per measurement on stdout; progress on stderr.
#
#   bench/ui/chronoflow.sh                        (SQLite, the embedded default)
#   CHRONOFLOW_UI_DATABASE_URL=postgres://postgres@127.0.0.1:5432/chronoflow_ui_bench bench/ui/chronoflow.sh
#
# Builds release binaries (`cargo build --release -p chronoflow -p chronoflow-bench`) unless
# CHRONOFLOW_BIN and BENCH_UI_POPULATE name them.
set -euo pipefail
cd "$(dirname "$0")/../.."
port="${CHRONOFLOW_UI_PORT:-18686}"
tasks="${CHRONOFLOW_UI_TASKS:-5000}"
runs="${CHRONOFLOW_UI_RUNS:-25}"
small="${CHRONOFLOW_UI_SMALL_DAGS:-999}"
log() { echo "[chronoflow.sh $(date +%T)] $*" >&2; }
target="${CARGO_TARGET_DIR:-target}"
if [ -z "${CHRONOFLOW_BIN:-}" ] || [ -z "${BENCH_UI_POPULATE:-}" ]; then
  cargo build --release -q -p chronoflow -p chronoflow-bench >&2
fi
bin="${CHRONOFLOW_BIN:-$target/release/chronoflow}"
populate="${BENCH_UI_POPULATE:-$target/release/bench-ui-populate}"

work="$(mktemp -d /tmp/chronoflow-ui-bench.XXXXXX)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 143" INT TERM

url="${CHRONOFLOW_UI_DATABASE_URL:-sqlite://$work/state.db}"
store=sqlite
if [[ "$url" == postgres* ]]; then
  store=postgres
  db="${url##*/}"
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >&2
fi
log "populating $store: $tasks-task DAG + $small small DAGs, $runs runs each"
"$populate" --database-url "$url" --specs-out "$work/specs.json" --tasks "$tasks" --runs "$runs" --dags "$small" >&2
mkdir -p "$work/repo"
"$bin" scheduler --repo "$work/repo" --specs "$work/specs.json" --database-url "$url" \
  --home "$work/home" --warehouse "$work/wh" --listen "127.0.0.1:$port" --tick-ms "${CHRONOFLOW_UI_TICK_MS:-200}" \
  2>"$work/scheduler.log" &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null && break
  sleep 0.2
done
curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null || { cat "$work/scheduler.log" >&2; exit 1; }
log "serving on 127.0.0.1:$port"
CHRONOFLOW_UI_STORE="$store" CHRONOFLOW_UI_TASKS="$tasks" CHRONOFLOW_UI_RUNS="$runs" \
  CHRONOFLOW_UI_DAGS="$((small + 1))" python3 bench/ui/chronoflow_time.py "http://127.0.0.1:$port"
if [ "${CHRONOFLOW_UI_BROWSER:-0}" = 1 ]; then
  CHRONOFLOW_UI_TASKS="$tasks" CHRONOFLOW_UI_RUNS="$runs" node bench/ui/chronoflow_page.mjs "http://127.0.0.1:$port"
fi
