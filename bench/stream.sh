#!/usr/bin/env bash
# Streaming ingest and freshness: chronoflow's Kafka consumer (`run --mode streaming`) into the
# embedded KV and into Redis, and Feast 0.67's push path into its SQLite and Redis online stores,
# with the same quickstart `returns` events, measured in one run on a local tansu broker.
#
#   bench/stream.sh     (N=200000 USERS=10000 PARTITIONS=2 RATES="1000 10000" RATE_SECONDS=20 SAMPLES=200)
#   PARTS="feast" bench/stream.sh         (a subset of: ingest freshness feast)
#   TANSU_STORAGE=memory://tansu/ TANSU_BIN=... bench/stream.sh   (tansu's storage engine; default
#       sqlite://tansu.db, what the tests use. memory:// needs tansu built with the dynostore feature,
#       and on 2026-12-07 it acknowledged records it then did not keep: 97,216 of 100,000 produced)
#   FETCH_MAX_WAIT_MS=20 bench/stream.sh   (the consumers' --fetch-max-wait-ms, also given to
#       standalone's supervised stream as [streaming] fetch_max_wait_ms; default: chronoflow's)
#   MAX_FETCH_BYTES=1048576 bench/stream.sh   (the consumers' --max-fetch-bytes, and [streaming]
#       max_fetch_bytes; default here 4 MiB: tansu rescans a partition's backlog on every fetch, so
#       catching up on 200,000 records cost it 2.5x the CPU per record in 256 KiB fetches)
#   FEAST_BATCHES="1000 all" bench/stream.sh   (Feast's rows per push, one fresh store each; "all":
#       every event in one push, Feast's fastest)
#
# 1. ingest: for each KV, a fresh broker; N events produced to events.returns first; then the
#    consumer starts and is timed until its --status-file shows every partition committed to the end
#    (bench/stream/wait_status.py); then `serve` on that KV must answer every sampled user's 30-day
#    count and sum as batch + streamed events (bench/stream/check.py).
# 2. freshness: the consumer with `serve` (Redis), `standalone` supervising the stream (embedded KV:
#    redb allows one process); events produced at each of RATES for RATE_SECONDS, and SAMPLES sampled
#    events polled with POST /v1/fetch/groupby/quickstart.returns.v1 until counted.
# 3. feast: FeatureStore.push of the same N events (for each of FEAST_BATCHES rows a push, into a
#    fresh store), then FEAST_SINGLE one by one.
# Results: JSON lines in bench/stream/results/<UTC date>.jsonl (RESULTS=...) and tables on stdout.
# Exit 3 when a part could not run (the table says which and why); the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"; W="$ROOT/.bench/stream-run"; PY="$ROOT/.bench/stream/bin/python"
N=${N:-200000}; USERS=${USERS:-10000}; PARTITIONS=${PARTITIONS:-2}
RATES=(${RATES:-1000 10000}); RATE_SECONDS=${RATE_SECONDS:-20}; SAMPLES=${SAMPLES:-200}
PARTS=" ${PARTS:-ingest freshness feast} "
MAX_FETCH_BYTES=${MAX_FETCH_BYTES:-4194304}; FEAST_BATCHES=(${FEAST_BATCHES:-1000 all})
REDIS=${REDIS:-127.0.0.1:6379}; PORT=${PORT:-9110}
RESULTS=${RESULTS:-bench/stream/results/$(date -u +%F).jsonl}
TOPIC=events.returns
repo=fixtures/chronon/quickstart/compiled; conf=production/group_bys/quickstart/returns.v1
BATCH=$(date -u -d yesterday +%F)   # the served batch; streamed events are today's
fetch_url="http://127.0.0.1:$PORT/v1/fetch/groupby/quickstart.returns.v1"

chronoflow_parts=false
if [[ "$PARTS" == *" ingest "* || "$PARTS" == *" freshness "* ]]; then chronoflow_parts=true; fi
# CHRONOFLOW_BIN skips the build (e.g. a debug binary to try the script quickly).
if [ -z "${CHRONOFLOW_BIN:-}" ] && $chronoflow_parts; then
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/rel}" cargo build -q --release -p chronoflow
fi
cf="${CHRONOFLOW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target/rel}/release/chronoflow}"
TANSU="${TANSU_BIN:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}"
[ -x "$TANSU" ] || { echo "tansu missing: cargo install tansu --version 0.6.0 --locked --features libsql" >&2; exit 1; }
bench/stream/setup.sh
export PYTHONPATH="$ROOT/bench/stream"

pids=()
stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap 'stop ${pids[@]+"${pids[@]}"}' EXIT   # never leave a broker or server behind
rm -rf "$W"; mkdir -p "$W"; out="$W/results.jsonl"; : > "$out"
skip() { echo "{\"bench\": \"skipped\", \"what\": \"$1\", \"why\": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")}" >> "$out"; echo "SKIPPED $1: $2" >&2; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }

broker=""
start_broker() {  # a fresh broker and storage: every measurement starts from an empty topic
  if [ -n "$broker" ]; then stop "$broker"; fi
  local dir="$W/tansu"; rm -rf "$dir"; mkdir -p "$dir"
  kport=$(free_port); BROKERS="127.0.0.1:$kport"
  (cd "$dir" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$kport" \
    --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine "${TANSU_STORAGE:-sqlite://tansu.db}") >> "$W/tansu.log" 2>&1 &
  broker=$!; pids+=("$broker")
  "$PY" -c "import kafka_io; kafka_io.wait_for_port('127.0.0.1', $kport)"
}
produce() {  # N events into a fresh broker -> $W/events.jsonl, $W/ends.json
  start_broker
  "$PY" bench/stream/produce.py "$BROKERS" "$TOPIC" "$PARTITIONS" "$N" "$USERS" "$W/events.jsonl" "$W/ends.json" | tee -a "$out"
}

export CHRONOFLOW_WAREHOUSE="$W/warehouse"
if $chronoflow_parts; then
  echo "== batch: returns of $USERS users for the 20 days up to $BATCH, uploaded as $BATCH's batch"
  "$PY" bench/stream/gen_batch.py "$W/batch.csv" "$BATCH" "$USERS"
  "$cf" table import data.returns "$W/batch.csv" >/dev/null
  "$cf" run --mode upload --repo "$repo" --conf "$conf" --ds "$BATCH" 2>&1 | tail -1
  # The consumer exits once caught up when it can (exact timing; else the status file's 1 s).
  if [[ "$("$cf" run --help 2>&1)" == *--until-caught-up* ]]; then until_caught_up=--until-caught-up; fi
fi
setup_kv() {  # embedded|redis: an empty store holding the batch
  if [ "$1" = embedded ]; then rm -rf "$W/kv"; export CHRONOFLOW_KV="$W/kv"; else
    redis-cli -u "redis://$REDIS/8" FLUSHDB >/dev/null; export CHRONOFLOW_KV="redis://$REDIS/8"; fi
  "$cf" run --mode upload-to-kv --repo "$repo" --conf "$conf" --ds "$BATCH" 2>&1 | tail -1
}
consumer() {  # status file [flags]: the consumer on $BROKERS into $CHRONOFLOW_KV, in the background
  local status=$1; shift
  "$cf" run --mode streaming --repo "$repo" --conf "$conf" --kafka-brokers "$BROKERS" \
    --kv "$CHRONOFLOW_KV" --warehouse "$CHRONOFLOW_WAREHOUSE" --status-file "$status" "$@" ${STREAM_ARGS:-} \
    ${FETCH_MAX_WAIT_MS:+--fetch-max-wait-ms "$FETCH_MAX_WAIT_MS"} --max-fetch-bytes "$MAX_FETCH_BYTES" \
    > "$W/consumer.log" 2>&1 &
  consumer_pid=$!; pids+=("$consumer_pid")
}
why() { tail -n 3 "$1" | tr '\n' ' '; }

if [[ "$PARTS" == *" ingest "* ]]; then
  for kv in embedded redis; do
    echo "== ingest: $N events on tansu, then the consumer into the $kv KV"
    produce
    setup_kv "$kv"
    rm -f "$W/status.json"; start=$(date +%s.%N); consumer "$W/status.json" ${until_caught_up:-}
    if "$PY" bench/stream/wait_status.py "$W/status.json" "$W/ends.json" "$consumer_pid" "chronoflow-$kv" "$start" "$broker" \
        > "$W/ingest.json" 2> "$W/ingest.err"; then
      tee -a "$out" < "$W/ingest.json"
      stop "$consumer_pid"   # redb: one process at a time
      "$cf" serve --listen "127.0.0.1:$PORT" --no-fetch-log 2>"$W/serve.log" & srv=$!; pids+=("$srv")
      wait_http "http://127.0.0.1:$PORT/health"
      "$PY" bench/stream/check.py "$W/batch.csv" "$W/events.jsonl" "$fetch_url" "chronoflow-$kv"
      stop "$srv"
    else
      stop "$consumer_pid"
      skip "ingest chronoflow-$kv" "$(why "$W/ingest.err") consumer: $(why "$W/consumer.log")"
    fi
  done
fi

if [[ "$PARTS" == *" freshness "* ]]; then
  for kv in redis embedded; do
    echo "== freshness: the consumer into the $kv KV, events at ${RATES[*]} /s"
    start_broker
    "$PY" -c "import kafka_io; kafka_io.create_topic('$BROKERS', '$TOPIC', $PARTITIONS)"
    setup_kv "$kv"
    if [ "$kv" = redis ]; then
      consumer "$W/status-fresh.json"
      "$cf" serve --listen "127.0.0.1:$PORT" --no-fetch-log 2>"$W/serve.log" & srv=$!; pids+=("$srv")
      started=("$consumer_pid" "$srv"); log="$W/consumer.log"
    elif [[ "$("$cf" --help 2>&1)" == *streams* ]]; then
      # standalone's worker supervises the stream (the embedded store is open in its process only):
      # every DAG paused but the quickstart's streaming keep-alive, brokers from [streaming].
      export CHRONOFLOW_DATABASE_URL="sqlite://$W/state.db" CHRONOFLOW_HOME="$W/home" CHRONOFLOW_KAFKA_BROKERS="$BROKERS"
      printf '[streaming]\nkafka_brokers = "%s"\n' "$BROKERS" > "$W/chronoflow.toml"
      if [ -n "${FETCH_MAX_WAIT_MS:-}" ]; then echo "fetch_max_wait_ms = $FETCH_MAX_WAIT_MS" >> "$W/chronoflow.toml"; fi
      echo "max_fetch_bytes = $MAX_FETCH_BYTES" >> "$W/chronoflow.toml"
      rm -rf "$W/state.db" "$W/home"; mkdir -p "$W/home"
      "$cf" dags sync --repo "$repo" --config "$W/chronoflow.toml" >/dev/null
      "$cf" dags pause --all >/dev/null && "$cf" dags unpause chronon_gb_streaming_quickstart >/dev/null
      "$cf" standalone --repo "$repo" --config "$W/chronoflow.toml" --listen "127.0.0.1:$PORT" \
        ${STANDALONE_ARGS:-} > "$W/standalone.log" 2>&1 & srv=$!; pids+=("$srv")
      started=("$srv"); log="$W/standalone.log"; export FRESH_WARMUP=180
    else
      skip "freshness chronoflow-embedded" "this binary has no stream supervision (no streams command)"
      continue
    fi
    if ! wait_http "http://127.0.0.1:$PORT/health"; then
      stop "${started[@]}"; skip "freshness chronoflow-$kv" "no server: $(why "$log")"; continue
    fi
    for rate in "${RATES[@]}"; do
      if ! "$PY" bench/stream/freshness.py "$BROKERS" "$TOPIC" "$fetch_url" "chronoflow-$kv" "$rate" \
          "$RATE_SECONDS" "$SAMPLES" "$USERS" >> "$out" 2> "$W/fresh.err"; then
        skip "freshness chronoflow-$kv at $rate/s" "$(why "$W/fresh.err") server: $(why "$log")"; break
      fi
      tail -1 "$out"
    done
    stop "${started[@]}"; unset FRESH_WARMUP
  done
fi

if [[ "$PARTS" == *" feast "* ]]; then
  [ -s "$W/events.jsonl" ] || produce
  for store in sqlite redis; do
    single=${FEAST_SINGLE:-2000}
    for batch in "${FEAST_BATCHES[@]}"; do
      [ "$batch" = all ] && batch=$N
      echo "== Feast 0.67 push: the same $N events into its $store online store, $batch a push"
      # Feast keeps the newest event per key, and skips older writes: every run starts empty.
      if [ "$store" = redis ]; then redis-cli -u "redis://$REDIS/9" FLUSHDB >/dev/null; fi
      rm -rf "$W/feast_$store"
      FEAST_BATCH=$batch FEAST_SINGLE=$single \
        "$PY" bench/stream/feast_push.py "$W/events.jsonl" "$W/feast_$store" "$store" "$REDIS,db=9" | tee -a "$out"
      single=0   # the one-by-one pushes once per store
    done
  done
fi
if [ -n "$broker" ]; then stop "$broker"; fi

mkdir -p "$(dirname "$RESULTS")"; cp "$out" "$RESULTS"
echo; "$PY" bench/stream/table.py "$out"; echo; echo "results: $RESULTS"
if grep -q '"bench": "skipped"' "$out"; then exit 3; fi
