#!/usr/bin/env bash
# The Chronon quickstart, end to end on embedded defaults: check and plan the configs, import the
# quickstart data as data.* tables, backfill the GroupBys on the local engine, run the Join backfill
# DAG (both training sets) through the scheduler, report what ran, print a few training rows, then
# serve: upload the GroupBys to the embedded KV store, replay the last day's events, start the HTTP
# fetcher and fetch a training row's features online.
#
#   ./quickstart.sh                 (debug build; PROFILE=release for an optimized one)
#   QUICKSTART_EXIT=1 ./quickstart.sh   (stop the fetcher after the example fetch)
#
# Everything is written under ./.chronoflow/quickstart (remove it to start over).
set -euo pipefail
cd "$(dirname "$0")"
profile="${PROFILE:-debug}"
if [ "$profile" = release ]; then cargo build -q --release -p chronoflow; else cargo build -q -p chronoflow; fi
cf="$PWD/target/$profile/chronoflow"
repo=fixtures/chronon/quickstart
export CHRONOFLOW_WAREHOUSE="$PWD/.chronoflow/quickstart/warehouse"
export CHRONOFLOW_DATABASE_URL="sqlite://$PWD/.chronoflow/quickstart/state.db"
export CHRONOFLOW_HOME="$PWD/.chronoflow/quickstart"
export CHRONOFLOW_KV="$PWD/.chronoflow/quickstart/kv"
port="${PORT:-9000}"

echo "== check and plan"
"$cf" check --repo "$repo"
"$cf" plan --repo "$repo" --dag chronon_join_quickstart

echo "== import the quickstart data"
for t in purchases returns users checkouts; do
  "$cf" table import "data.$t" "$repo/data/$t.csv"
done
# The training sets' sensors (Chronon's own declared dependencies) wait for data.users/ds=2023-11-30, but
# the quickstart ships one users snapshot (2023-11-29). Land that day's snapshot as a daily export would:
# the same users (the Join reads the day before's snapshot, so its rows do not change).
tmp="$(mktemp -d)"
sed 's/^2023-11-29,/2023-11-30,/' "$repo/data/users.csv" > "$tmp/users.csv"
"$cf" table import data.users "$tmp/users.csv"
rm -r "$tmp"

echo "== backfill the GroupBys (November 2023)"
for gb in purchases returns users; do
  "$cf" run --mode backfill --repo "$repo" --conf "compiled/production/group_bys/quickstart/$gb.v1" \
    --start-ds 2023-11-01 --end-ds 2023-11-30
done

echo "== the Join backfill DAG, through the scheduler (sensors, then both training sets)"
"$cf" dags sync --repo "$repo"
# Only the backfill DAG runs here: the daily DAGs would wait for today's data. (The serving steps run
# by hand below, for the day the data ends.)
"$cf" dags pause --all
"$cf" dags unpause chronon_join_backfill
"$cf" dags trigger chronon_join_backfill --start-ds 2023-11-30 --end-ds 2023-11-30
"$cf" standalone --repo "$repo" --until-idle --tick-ms 100 --no-api
run="$("$cf" runs list --dag chronon_join_backfill --limit 1 | awk '{print $2}')"
"$cf" tasks list chronon_join_backfill "$run"

echo "== tables"
"$cf" table list
echo "== default.quickstart_training_set_v2, first rows"
"$cf" table export default.quickstart_training_set_v2 --ds 2023-11-30 --format csv | head -4

echo "== serve: the GroupBys as of 2023-11-29 into the KV store, the Join's definition, 2023-11-30's returns replayed"
for gb in purchases returns users; do
  conf="compiled/production/group_bys/quickstart/$gb.v1"
  "$cf" run --mode upload --repo "$repo" --conf "$conf" --ds 2023-11-29
  "$cf" run --mode upload-to-kv --repo "$repo" --conf "$conf" --ds 2023-11-29
done
"$cf" run --mode metadata-upload --repo "$repo" --conf compiled/production/joins/quickstart/training_set.v2
"$cf" run --mode streaming --repo "$repo" --conf compiled/production/group_bys/quickstart/returns.v1 \
  --replay-table data.returns --since 2023-11-29

echo "== the fetcher on http://127.0.0.1:$port"
"$cf" serve --listen "127.0.0.1:$port" &
fetcher=$!
trap 'kill $fetcher 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
# The first training row of user 26 (checkout at 2023-11-30T19:57:14Z): the same values as its backfill row.
echo "\$ curl -X POST 'http://127.0.0.1:$port/v1/fetch/join/quickstart/training_set.v2?at_millis=1701374234059' -d '[{\"user_id\": 26}]'"
curl -sf -X POST "http://127.0.0.1:$port/v1/fetch/join/quickstart/training_set.v2?at_millis=1701374234059" \
  -H 'Content-Type: application/json' -d '[{"user_id": 26}]' | python3 -m json.tool
echo "== the Join backfill row of the same checkout, for comparison"
"$cf" table export default.quickstart_training_set_v2 --ds 2023-11-30 --format json | grep '"ts":1701374234059'
if [ "${QUICKSTART_EXIT:-0}" = 1 ]; then exit 0; fi
echo "== the fetcher keeps running on http://127.0.0.1:$port (Ctrl-C to stop)"
wait $fetcher
