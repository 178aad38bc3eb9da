#!/usr/bin/env bash
# End-to-end check of the Feast side: test parquet -> sqlite and redis repos -> feast serve ->
# one curl -> load.sh levels. Work files go to .bench/serve/. Redis must be up at $REDIS (no auth).
#   usage: feast_e2e.sh [connections...]   (default 1 8 32; env DURATION default 5s, USERS default 1000)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; ROOT="$(cd "$HERE/../.." && pwd)"
W="$ROOT/.bench/serve"; PY="$ROOT/.bench/feast/bin/python"; PORT=${PORT:-6566}
REDIS=${REDIS:-127.0.0.1:6379}; LEVELS=("$@"); [ $# -gt 0 ] || LEVELS=(1 8 32)
export DURATION=${DURATION:-5s}
"$HERE/feast_setup.sh"
mkdir -p "$W"
"$PY" "$HERE/gen_features.py" "$W/features.parquet" "${USERS:-1000}" 12
seq 1 "${USERS:-1000}" > "$W/keys.txt"
# Body template: 12 floats + the string feature for one user_id.
F=$(printf '"user_features:f%d",' $(seq 0 11))
echo "{\"features\":[${F}\"user_features:segment\"],\"entities\":{\"user_id\":[{{KEY}}]}}" > "$W/body.json"
for STORE in sqlite redis; do
  "$PY" "$HERE/feast_repo.py" "$W/features.parquet" "$W/repo_$STORE" "$STORE" "$REDIS"
  "$HERE/feast_serve.sh" "$W/repo_$STORE" "$PORT" > "$W/serve_$STORE.log" 2>&1 &
  PID=$!; trap 'kill $PID 2>/dev/null || true' EXIT
  T0=$SECONDS; until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; do
    kill -0 $PID || { cat "$W/serve_$STORE.log"; exit 1; }; [ $((SECONDS - T0)) -lt 120 ] || exit 1; sleep 0.2; done
  echo "feast serve ($STORE) answered /health after $((SECONDS - T0)) s"
  sed 's/{{KEY}}/42/' "$W/body.json" | curl -sf -X POST -H 'Content-Type: application/json' --data @- \
    "http://127.0.0.1:$PORT/get-online-features" > "$W/one_$STORE.json"
  head -c 300 "$W/one_$STORE.json"; echo " ..."
  LABEL="feast-$STORE" "$HERE/load.sh" "http://127.0.0.1:$PORT/get-online-features" "$W/body.json" "$W/keys.txt" \
    "${LEVELS[@]}" | tee "$W/results_$STORE.jsonl"
  kill $PID; wait $PID 2>/dev/null || true; trap - EXIT
done
