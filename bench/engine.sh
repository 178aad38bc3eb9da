#!/usr/bin/env bash
# The engine benchmark's scaling table: a Join backfill (one SNAPSHOT and one TEMPORAL part over the
# same events; SUM, COUNT, AVERAGE over 3d/14d/30d and LAST_K(10) each: 20 features per left row)
# computed by chronoflow and by its peers on the same Parquet files, for every size x key density;
# every peer's output is compared with chronoflow's value by value (bench/engine/compare.py).
#
#   SIZES="1000000 10000000" DENSITIES="20 100 500" PEERS="duckdb duckdb_naive polars spark" bench/engine.sh
#
# SIZES: events per cell (left rows: a tenth). DENSITIES: events per key (keys = events / density).
# PEERS: any of duckdb (fast exact SQL), duckdb_naive (the range join written from SPEC §4), polars,
# polars_chunked (polars split by key into slices of CHUNK_EVENTS events, default 10M, for inputs
# polars cannot hold whole), spark. NAIVE_MAX (default 1000000000): duckdb_naive runs only where events x density <= NAIVE_MAX,
# as its join holds ~left x density pairs (about 20 GB at 10M events x 100 per key).
# REPEAT (default 1): runs of each system per cell (the table shows the median and the range; outputs
# are compared after the first). TIMEOUT (seconds, default none) stops a system that runs longer.
# CHRONOFLOW_BIN: use that binary; otherwise target/rel/release/chronoflow, built if missing.
# Data is generated once per cell under .bench/engine-data/EVENTSxDENSITY. One JSON line per
# (cell, system) is appended to bench/engine/results/DATE.jsonl, and the table printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SIZES=(${SIZES:-1000000 10000000})
DENSITIES=(${DENSITIES:-20 100 500})
PEERS=(${PEERS:-duckdb duckdb_naive polars spark})
NAIVE_MAX=${NAIVE_MAX:-1000000000}
TIMEOUT=${TIMEOUT:-0}
REPEAT=${REPEAT:-1}
venv="$ROOT/.bench/duckdb-venv"
py="$venv/bin/python"
if ! "$py" -c 'import duckdb, polars, pyspark, pyarrow, numpy' 2>/dev/null; then
  [ -x "$py" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q --upgrade pip; }
  "$venv/bin/pip" install -q duckdb==2.0.0 polars==2.1.0 pyspark==4.3.0 pyarrow numpy
fi
if [ -z "${CHRONOFLOW_BIN:-}" ]; then
  cf="$ROOT/target/rel/release/chronoflow"
  [ -x "$cf" ] || CARGO_TARGET_DIR="$ROOT/target/rel" cargo build -q --release -p chronoflow
else
  cf="$CHRONOFLOW_BIN"
fi
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
commit="$(git rev-parse --short HEAD)"
results="$ROOT/bench/engine/results/$(date -u +%F).jsonl"
mkdir -p "$(dirname "$results")"
bin_mtime="$(date -u -r "$cf" +%FT%TZ)"
echo "run $run_id, commit $commit, binary $cf ($bin_mtime); results -> $results"

# record SYSTEM STATUS WALL_S COMPUTE_S PEAK_KB [COMPARE_JSON] [NOTE]
record() {
  "$py" - "$@" >>"$results" <<PY
import json, sys
system, status, wall, compute, peak = sys.argv[1:6]
cmp = json.loads(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else {}
note = sys.argv[7] if len(sys.argv) > 7 else ""
num = lambda s: float(s) if s not in ("", "-") else None
print(json.dumps({"run": "$run_id", "commit": "$commit", "binary_mtime": "$bin_mtime", "load_before": "$load_before", "events": $events, "left": $left, "keys": $keys,
                  "density": $density, "rep": $rep, "system": system, "status": status, "wall_s": num(wall),
                  "compute_s": num(compute), "peak_kb": num(peak), "identical": cmp.get("identical"),
                  "mismatches": cmp.get("mismatches"), "skipped": cmp.get("skipped"),
                  "identical_to_duckdb": cmp.get("identical_to_duckdb"), "note": note}))
PY
}

# timed OUT_PREFIX CMD...: runs CMD under /usr/bin/time (and timeout); stdout+stderr to OUT_PREFIX.log,
# "WALL PEAK_KB" to OUT_PREFIX.time; returns CMD's status (124 on timeout).
timed() {
  local prefix="$1"; shift
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"   # recorded with the result: the VM is shared
  local to=()
  [ "$TIMEOUT" != 0 ] && to=(timeout "$TIMEOUT")
  "${to[@]}" /usr/bin/time -f "%e %M" -o "$prefix.time" "$@" >"$prefix.log" 2>&1
}

result_field() {  # result_field LOG KEY: KEY from the RESULT line of LOG
  "$py" -c 'import json, sys
r = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        r = json.loads(line[7:])
print(r.get(sys.argv[2], ""))' "$1" "$2"
}

for events in "${SIZES[@]}"; do
  for density in "${DENSITIES[@]}"; do
    left=$((events / 10)); keys=$((events / density))
    cell="$ROOT/.bench/engine-data/${events}x${density}"
    gen_args="--events $events --left $left --keys $keys"
    if [ ! -f "$cell/events.parquet" ] || [ "$(cat "$cell/gen_args" 2>/dev/null)" != "$gen_args" ]; then
      rm -rf "$cell"; mkdir -p "$cell"
      "$py" bench/engine/gen_data.py "$cell" $gen_args
      echo "$gen_args" >"$cell/gen_args"
    fi
    out="$cell/out"; rm -rf "$out"; mkdir -p "$out"
    echo "== $events events, $left left rows, $keys keys ($density events per key)"

    # chronoflow: import both files into a fresh warehouse (timed apart), then the backfill of the
    # 7 left days in one step.
    export CHRONOFLOW_WAREHOUSE="$cell/warehouse"
    rm -rf "$CHRONOFLOW_WAREHOUSE"
    have_ref=0; load_before=""; rep=1
    if /usr/bin/time -f "%e" -o "$out/import.time" "$cf" table import data.events "$cell/events.parquet" >"$out/import.log" 2>&1 &&
       /usr/bin/time -f "%e" -o "$out/import_left.time" "$cf" table import data.left "$cell/left.parquet" >>"$out/import.log" 2>&1; then
      t_imp=$(tail -1 "$out/import.time"); t_imp2=$(tail -1 "$out/import_left.time")
      for rep in $(seq 1 "$REPEAT"); do
        # --force: a repetition recomputes the partitions the previous one wrote.
        if timed "$out/chronoflow" "$cf" run --mode backfill --repo "$cell/repo" --conf production/joins/bench/training.v1 \
            --start-ds 2024-02-23 --end-ds 2024-02-29 --step-days 7 --force; then
          read -r wall peak <"$out/chronoflow.time"
          echo "   chronoflow: $wall s, peak $((peak / 1024)) MB (import: events $t_imp s, left $t_imp2 s)"
          record chronoflow ok "$wall" "$wall" "$peak" "" "import not counted: events $t_imp s, left $t_imp2 s"
          have_ref=1
        else
          rc=$?; echo "   chronoflow FAILED ($rc), see $out/chronoflow.log"; tail -3 "$out/chronoflow.log"
          record chronoflow "$([ $rc = 124 ] && echo timeout || echo failed)" "" "" "" "" "exit $rc"
        fi
      done
    else
      echo "   chronoflow: import FAILED, see $out/import.log"; tail -3 "$out/import.log"
      record chronoflow failed "" "" "" "" "import failed"
    fi
    ref="$CHRONOFLOW_WAREHOUSE/default/bench_training_v1/*/*.parquet"

    for peer in "${PEERS[@]}"; do
      case "$peer" in
        duckdb) script=duckdb_fast.py ;;
        duckdb_naive) script=duckdb_join.py ;;
        polars) script=polars_join.py ;;
        polars_chunked) script=polars_chunked.py ;;
        spark) script=spark_join.py ;;
        *) echo "unknown peer $peer" >&2; exit 2 ;;
      esac
      if [ "$peer" = duckdb_naive ] && [ $((events * density)) -gt "$NAIVE_MAX" ]; then
        echo "   $peer: skipped (events x density > NAIVE_MAX=$NAIVE_MAX: its range join would need far more than 20 GB)"
        rep=1; load_before=""
        record "$peer" skipped "" "" "" "" "range join too large (events x density > $NAIVE_MAX)"
        continue
      fi
      for rep in $(seq 1 "$REPEAT"); do
        rm -rf "$out/$peer.parquet"
        if timed "$out/$peer" "$py" "bench/engine/$script" "$cell" "$out/$peer.parquet"; then
          read -r wall peak <"$out/$peer.time"
          jvm=$(result_field "$out/$peer.log" jvm_peak_kb); peak=$((peak + ${jvm:-0}))
          compute=$(result_field "$out/$peer.log" compute_s)
          got="$out/$peer.parquet"; [ -d "$got" ] && got="$got/*.parquet"
          cmp=""
          if [ "$rep" = 1 ] && [ "$have_ref" = 1 ]; then
            "$py" bench/engine/compare.py "$ref" "$got" >"$out/$peer.compare" 2>&1 || true
            cmp=$(grep '^RESULT ' "$out/$peer.compare" | cut -c8-)
          fi
          if [ "$rep" = 1 ] && [ "$peer" != duckdb ] && [ -f "$out/duckdb.parquet" ]; then
            "$py" bench/engine/compare.py "$out/duckdb.parquet" "$got" >"$out/$peer.compare_duckdb" 2>&1 || true
            same=$(grep '^RESULT ' "$out/$peer.compare_duckdb" | cut -c8- | "$py" -c 'import json,sys; print(json.load(sys.stdin)["identical"])' 2>/dev/null || echo None)
            cmp=$("$py" -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["identical_to_duckdb"]={"True":True,"False":False}.get(sys.argv[2]); print(json.dumps(d))' "$cmp" "$same")
          fi
          [ -n "$cmp" ] || cmp='{}'
          verdict=$(echo "$cmp" | "$py" -c 'import json,sys
d = json.load(sys.stdin)
v = {True: "identical to chronoflow", False: "DIFFERENT from chronoflow: %s" % d.get("mismatches"), None: "not compared with chronoflow"}[d.get("identical")]
if "identical_to_duckdb" in d:
    v += {True: ", identical to DuckDB", False: ", DIFFERENT from DuckDB", None: ""}[d["identical_to_duckdb"]]
print(v)')
          echo "   $peer: $wall s (compute $compute s), peak $((peak / 1024)) MB, $verdict"
          record "$peer" ok "$wall" "$compute" "$peak" "$cmp"
        else
          rc=$?; echo "   $peer FAILED ($rc), see $out/$peer.log"; tail -3 "$out/$peer.log"
          record "$peer" "$([ $rc = 124 ] && echo timeout || echo failed)" "" "" "" "" "exit $rc"
        fi
      done
    done
  done
done
echo
"$py" bench/engine/table.py "$results" --run "$run_id"
