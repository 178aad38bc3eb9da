#!/usr/bin/env bash
# Start Feast's Python feature server on a repo made by feast_repo.py (foreground; caller backgrounds it).
#   usage: feast_serve.sh <repo_dir> <port>        env FEAST_WORKERS (default 2)
#
# Options, chosen to give Feast its best fair throughput on this 2-core machine:
#  -w 2              `feast serve` runs gunicorn with uvicorn workers (uvicorn_worker.UvicornWorker);
#                    one Python process per worker, so 2 workers = one per core (same core budget as
#                    chronoflow). Each worker runs the whole app (registry copy, store connection).
#  --max-requests 0  Feast's default is 1000 (+jitter 50): each worker is killed and re-forked after
#                    ~1000 requests, i.e. several times a second under load. 0 disables recycling.
#  --no-access-log   otherwise gunicorn writes one access-log line per request to stdout.
#  --log-level WARNING  quiets Feast's own INFO logging.
#  registry TTL stays at its default (60 s, a background re-read of the local registry file).
# No telemetry: Feast 0.67 has no usage module (FEAST_USAGE is not read any more); set anyway, harmless.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REPO="$(cd "$1" && pwd)"; PORT="$2"
export FEAST_USAGE=False
cd "$REPO"
exec "$ROOT/.bench/feast/bin/feast" --log-level WARNING serve -h 127.0.0.1 -p "$PORT" \
  -w "${FEAST_WORKERS:-2}" --max-requests 0 --no-access-log
