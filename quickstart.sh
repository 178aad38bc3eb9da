#!/usr/bin/env bash
# The Chronon quickstart, end to end on embedded defaults: check and plan the configs, import the
# quickstart data as data.* tables, backfill the GroupBys and both training sets on the local
# engine, and print a few training rows.
#
#   ./quickstart.sh                 (debug build; PROFILE=release for an optimized one)
#
# Everything is written under ./.chronoflow/quickstart (remove it to start over).
set -euo pipefail
cd "$(dirname "$0")"
profile="${PROFILE:-debug}"
if [ "$profile" = release ]; then cargo build -q --release -p chronoflow; else cargo build -q -p chronoflow; fi
cf="$PWD/target/$profile/chronoflow"
repo=fixtures/chronon/quickstart
export CHRONOFLOW_WAREHOUSE="$PWD/.chronoflow/quickstart/warehouse"

echo "== check and plan"
"$cf" check --repo "$repo"
"$cf" plan --repo "$repo" --dag chronon_join_quickstart

echo "== import the quickstart data"
for t in purchases returns users checkouts; do
  "$cf" table import "data.$t" "$repo/data/$t.csv"
done

echo "== backfill the GroupBys (November 2023) and the training sets (2023-11-30)"
for gb in purchases returns users; do
  "$cf" run --mode backfill --repo "$repo" --conf "compiled/production/group_bys/quickstart/$gb.v1" \
    --start-ds 2023-11-01 --end-ds 2023-11-30
done
for join in training_set.v1 training_set.v2; do
  "$cf" run --mode backfill --repo "$repo" --conf "compiled/production/joins/quickstart/$join" --ds 2023-11-30
done

echo "== tables"
"$cf" table list
echo "== default.quickstart_training_set_v2, first rows"
"$cf" table export default.quickstart_training_set_v2 --ds 2023-11-30 --format csv | head -4
