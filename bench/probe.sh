#!/usr/bin/env bash
# Hostile inputs against the real binary, from outside: CLI flags and arguments, configs, data
# files, HTTP requests to the API and the fetcher (path traversal, bombs, slowloris, floods),
# damaged stores and killed processes. Prints one line per case (expected class, outcome) and
# exits 1 on any PANIC, HANG or WRONG. About 740 cases in 75 s on 2 cores (debug build). No external
# service needed. Python 3 only (pyarrow, when installed, adds Parquet files of nested types).
#
#   bench/probe.sh                          (builds the debug binary)
#   bench/probe.sh path/to/chronoflow       (probes that binary)
#   PROBE_ONLY=http bench/probe.sh          (one area: cli, config, data, state, http)
#   PROBE_HEAVY=1 bench/probe.sh            (adds a case that needs about 15 GB of memory)
#   PROBE_KEEP=1 bench/probe.sh             (keeps the temp dir with logs and stores)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
else
  cargo build -q -p chronoflow
  bin="$PWD/target/debug/chronoflow"
fi
exec python3 bench/probe/probe.py "$bin"
