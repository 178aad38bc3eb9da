#!/usr/bin/env bash
# The engine benchmark's Join backfill read from Delta Lake tables versus chronoflow's own Parquet
# tables, in one session (issue 15). The same two Parquet inputs are imported into two warehouses,
# one in the default format (chronoflow: Parquet with a manifest per partition) and one with
# --warehouse-format delta (every table it creates is a Delta table, the Join's output included);
# then the backfill runs from each, alternating, REPEAT times each.
#
#   bench/delta_vs_parquet.sh .bench/engine-data/10000000x100
#
# DATA_DIR: a cell of bench/engine.sh (events.parquet, left.parquet, repo/), e.g. made by
#   python bench/engine/gen_data.py .bench/engine-data/10000000x100 --events 10000000 --left 1000000 --keys 100000
# CHRONOFLOW_BIN: a binary built with `--features delta` (default target/rel/release/chronoflow).
# REPEAT (default 3): backfills per format. PY: a Python with duckdb and its delta extension
# (default .ci-cache/lakehouse-4/bin/python, which .ci/run installs).
# Each step runs under /usr/bin/time (wall, user, sys, peak RSS); every line goes to
# DATA_DIR/delta_vs_parquet/results.tsv and a table of medians is printed at the end. The outputs are
# compared value by value (bench/engine/compare.py): chronoflow's export of each warehouse's output,
# and the Delta output as DuckDB's delta_scan reads it (a reader that is not ours).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DATA="$(cd "${1:?usage: $0 DATA_DIR}" && pwd)"
REPEAT=${REPEAT:-3}
PY=${PY:-$ROOT/.ci-cache/lakehouse-4/bin/python}
cf=${CHRONOFLOW_BIN:-$ROOT/target/rel/release/chronoflow}
[ -x "$cf" ] || { echo "no $cf: build it with --features delta" >&2; exit 2; }
out="$DATA/delta_vs_parquet"
mkdir -p "$out"
results="$out/results.tsv"
printf 'step\tformat\trep\twall_s\tuser_s\tsys_s\tpeak_kb\tload_before\n' >"$results"
echo "binary $cf ($(date -u -r "$cf" +%FT%TZ)), commit $(git rev-parse --short HEAD), data $DATA"

# timed STEP FORMAT REP CMD...: CMD in FORMAT's warehouse under /usr/bin/time, a line in results.
timed() {
  local step="$1" format="$2" rep="$3"; shift 3
  local load; load="$(cut -d' ' -f1-3 /proc/loadavg)"
  if ! CHRONOFLOW_WAREHOUSE="$DATA/warehouse-$format" CHRONOFLOW_WAREHOUSE_FORMAT="$format" \
      /usr/bin/time -f "%e %U %S %M" -o "$out/$step-$format.time" "$@" >"$out/$step-$format-$rep.log" 2>&1; then
    echo "$step ($format) FAILED, see $out/$step-$format-$rep.log" >&2; tail -3 "$out/$step-$format-$rep.log" >&2; exit 1
  fi
  local wall user sys peak
  read -r wall user sys peak <"$out/$step-$format.time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$format" "$rep" "$wall" "$user" "$sys" "$peak" "$load" >>"$results"
  echo "  $step $format #$rep: $wall s wall, $user+$sys s CPU, peak $((peak / 1024)) MB (load $load)"
}

for format in chronoflow delta; do
  rm -rf "$DATA/warehouse-$format"
  timed import_events "$format" 1 "$cf" table import data.events "$DATA/events.parquet"
  timed import_left "$format" 1 "$cf" table import data.left "$DATA/left.parquet"
done
for rep in $(seq 1 "$REPEAT"); do
  # Alternate which format goes first, so neither always runs on a warmer page cache.
  order="chronoflow delta"; [ $((rep % 2)) = 0 ] && order="delta chronoflow"
  for format in $order; do
    # --force: a repetition recomputes the partitions the previous one wrote.
    timed backfill "$format" "$rep" "$cf" run --mode backfill --repo "$DATA/repo" \
      --conf production/joins/bench/training.v1 --start-ds 2024-02-23 --end-ds 2024-02-29 --step-days 7 --force
  done
done

# The outputs: each warehouse's through chronoflow's reader, and the Delta table through DuckDB's.
for format in chronoflow delta; do
  rm -f "$out/$format.parquet"
  CHRONOFLOW_WAREHOUSE="$DATA/warehouse-$format" "$cf" table export default.bench_training_v1 \
    --format parquet -o "$out/$format.parquet" 2>"$out/export-$format.log"
done
"$PY" - "$DATA/warehouse-delta/default/bench_training_v1" "$out/delta_scan.parquet" <<'PY'
import sys, duckdb
from duckdb_extensions import import_extension
con = duckdb.connect()
# From PyPI (duckdb-extension-delta, in the lakehouse venv): DuckDB cannot download it here.
import_extension("delta", con=con)
con.execute("LOAD delta")
con.execute(f"COPY (SELECT * FROM delta_scan('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet)")
PY
same=1
"$PY" bench/engine/compare.py "$out/chronoflow.parquet" "$out/delta.parquet" >"$out/compare.txt" 2>&1 || same=0
"$PY" bench/engine/compare.py "$out/chronoflow.parquet" "$out/delta_scan.parquet" >"$out/compare_delta_scan.txt" 2>&1 || same=0
grep -h '^compare\|^identical\|^DIFFERENT' "$out/compare.txt" "$out/compare_delta_scan.txt"
du -sh "$DATA"/warehouse-*/data/events "$DATA"/warehouse-*/default/bench_training_v1 2>/dev/null || true

"$PY" - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def cell(step, fmt):
    got = [r for r in rows if r["step"] == step and r["format"] == fmt]
    wall = [float(r["wall_s"]) for r in got]
    cpu = [float(r["user_s"]) + float(r["sys_s"]) for r in got]
    peak = [int(r["peak_kb"]) / 1024 for r in got]
    f = lambda xs, u: f"{statistics.median(xs):.1f}{u}" + (f" ({min(xs):.1f}-{max(xs):.1f})" if len(xs) > 1 else "")
    return f"{f(wall, ' s')} | {f(cpu, ' s')} | {f(peak, ' MB')}"
print("\n| step | format | wall | user+sys | peak RSS |\n|---|---|---|---|---|")
for step in ("import_events", "import_left", "backfill"):
    for fmt in ("chronoflow", "delta"):
        print(f"| {step} | {fmt} | {cell(step, fmt)} |")
PY
[ "$same" = 1 ] || { echo "outputs DIFFER: see $out/compare*.txt" >&2; exit 1; }
