#!/usr/bin/env bash
# Chaos: the quickstart's daily DAGs on simulated time (a day a minute) while schedulers, workers,
# uploads and fetchers are killed at random; then the checks: no task stuck, every partition and
# served batch whole, memory flat. About 10 minutes. Needs PostgreSQL and Redis (several processes
# share the state store and the KV store, as in production).
#
#   bench/chaos.sh                      (debug build)
#   PROFILE=release bench/chaos.sh
#   CHAOS_SECONDS=120 bench/chaos.sh    (a shorter chaos phase)
#
# Results: one JSON line appended to bench/chaos/results/chaos.jsonl; exit status 1 if a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-debug}"
if [ "$profile" = release ]; then cargo build -q --release -p chronoflow; else cargo build -q -p chronoflow; fi
export CHRONOFLOW_BIN="$PWD/target/$profile/chronoflow"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
exec python3 bench/chaos/chaos.py "$@"
