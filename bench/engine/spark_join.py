"""Apache Spark 4 (PySpark 4.3.0, local[2]): the engine benchmark's Join, exact, in DataFrames and
window functions, with the same formulation as duckdb_fast.py (read its docstring for why it is
exact). Spark has no ASOF join, so a lookup "the key's running values over events with ts < t" is a
union of the event rows and the lookup points sorted by (key, ts, points first), where each point
takes the last event row's running values (`last(..., ignorenulls)` over the rows before it).
Running sums and the rolling lists of the 10 newest (sorted by (ts, value) explicitly, not by
collect order) are computed on the events alone first, kept at the last event of each (key, ts).

    python spark_join.py DATA_DIR OUT.parquet

compute_s leaves out the JVM start (about 7 s); the process's wall time includes it. The RESULT line
also carries the JVM's peak RSS (jvm_peak_kb), which /usr/bin/time of the Python process does not
always see.
"""

import os
import sys
import time

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from common import DAY, HOUR, K, args, report

data, out = args()
spark = (
    SparkSession.builder.master("local[2]")
    .appName("chronoflow-engine-bench")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "12g"))
    .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "16"))
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
t0 = time.perf_counter()
c = F.col

ev = (
    spark.read.parquet(f"{data}/events.parquet")
    .where(c("value").isNotNull() & c("ts").isNotNull() & c("user_id").isNotNull())
    .select(
        c("user_id").alias("k"),
        c("ts"),
        c("value").alias("v"),
        (F.datediff(F.to_date(c("ds")), F.lit("1970-01-01")) - F.floor(c("ts") / DAY)).cast("long").alias("late"),
    )
)
lo, hi = ev.agg(F.min("late"), F.max("late")).first()
if lo is not None and (lo < 0 or hi > 1):
    sys.exit(f"spark_join relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")

w1 = Window.partitionBy("k").orderBy("ts", "v")
run = w1.rowsBetween(Window.unboundedPreceding, Window.currentRow)
roll = w1.rowsBetween(-(K - 1), Window.currentRow)
# Newest first: sort_array of (ts, v) structs descending is (ts desc, v desc).
newest = F.sort_array(F.collect_list(F.struct("ts", "v")).over(roll), asc=False)
last_of_ts = F.lead("ts").over(w1).isNull() | (F.lead("ts").over(w1) != c("ts"))
ev_all = (
    ev.select(
        "k", "ts",
        F.sum("v").over(run).alias("cs"), F.count("v").over(run).alias("cn"),
        F.sum(c("v") * c("late")).over(run).alias("cls"), F.sum("late").over(run).alias("cln"),
        newest.alias("l_all"), last_of_ts.alias("keep"),
    )
    .where("keep").drop("keep")
)
ev_on = ev.where(c("late") == 0).select("k", "ts", newest.alias("l_on"), last_of_ts.alias("keep")).where("keep").drop("keep")

left = spark.read.parquet(f"{data}/left.parquet").select(
    "row_id", c("user_id").alias("k"), c("ts").alias("t"), F.floor(c("ts") / DAY).cast("long").alias("a")
)
left.cache()
ka = left.select("k", "a").distinct()
mid = [0, 1, 3, 14, 30]
s3 = (F.floor((c("t") - 3 * DAY) / HOUR) * HOUR).cast("long")
pts = left.select("k", "t").union(left.select("k", s3.alias("t")))
for o in mid:
    pts = pts.union(ka.select("k", ((c("a") - o) * DAY).alias("t")))
pts_on = left.select("k", "t").union(ka.select("k", (c("a") * DAY).alias("t")))
pts = pts.distinct().withColumn("need_all", F.lit(True))
pts_on = pts_on.distinct().withColumn("need_on", F.lit(True))

# One sort for both series: event rows (kind 1) of both and the points (kind 0) of both; a point sees
# the last row before it that carries the column (ignorenulls), i.e. the last event with ts < t.
valcols = ["cs", "cn", "cls", "cln", "l_all", "l_on"]
points = pts.join(pts_on, ["k", "t"], "full").select("k", c("t").alias("ts"), "need_all", "need_on")
u = (
    ev_all.unionByName(ev_on, allowMissingColumns=True).withColumn("kind", F.lit(1))
    .unionByName(points.withColumn("kind", F.lit(0)), allowMissingColumns=True)
)
w2 = Window.partitionBy("k").orderBy("ts", "kind").rowsBetween(Window.unboundedPreceding, -1)
at = (
    u.select("k", "ts", "kind", "need_all", "need_on", *[F.last(x, ignorenulls=True).over(w2).alias(x) for x in valcols])
    .where(c("kind") == 0)
    .select(
        "k", c("ts").alias("t"),
        *[F.coalesce(c(x), F.lit(0)).alias(x) for x in ("cs", "cn", "cls", "cln")],
        F.coalesce(c("l_all"), F.array()).alias("l_all"), F.coalesce(c("l_on"), F.array()).alias("l_on"),
    )
)
at.cache()


def lookup(frame, prefix, t_expr, cols):
    tbl = at.select("k", c("t").alias("_t"), *[c(x).alias(prefix + x) for x in cols])
    return frame.withColumn("_t", t_expr).join(tbl, ["k", "_t"], "left").drop("_t")


def aggs(name, w, end, start, late_from, late_to):
    s = c(f"{end}cs") - c(f"{start}cs") - (c(f"{late_to}cls") - c(f"{late_from}cls"))
    n = c(f"{end}cn") - c(f"{start}cn") - (c(f"{late_to}cln") - c(f"{late_from}cln"))
    return [
        F.when(n > 0, s).cast("long").alias(f"{name}_sum_{w}d"),
        F.when(n > 0, n).cast("long").alias(f"{name}_count_{w}d"),
        F.when(n > 0, s.cast("double") / n).alias(f"{name}_average_{w}d"),
    ]


def last_k(name, on_list, day_start, all_list):
    merged = F.slice(
        F.concat(F.filter(c(on_list), lambda x: x["ts"] >= day_start), c(all_list)), 1, K
    )
    vals = F.transform(merged, lambda x: x["v"])
    return F.when(F.size(vals) > 0, vals).alias(f"{name}_last{K}")


sp, tp = "bench_snapshot_v1_value", "bench_temporal_v1_value"
kaf = ka
sums = ["cs", "cn", "cls", "cln"]
for o in mid:
    kaf = lookup(kaf, f"m{o}_", (c("a") - o) * DAY, sums + (["l_all", "l_on"] if o == 0 else ["l_all"] if o == 1 else []))
snap = []
for w in (3, 14, 30):
    snap += aggs(sp, w, "m0_", f"m{w}_", "m1_", "m0_")
snap.append(last_k(sp, "m0_l_on", (c("a") - 1) * DAY, "m1_l_all"))
snap_names = [f"{sp}_{op}_{w}d" for w in (3, 14, 30) for op in ("sum", "count", "average")] + [f"{sp}_last{K}"]
kaf = kaf.select("k", "a", *snap, "m0_cls", "m0_cln", "m0_l_all", "m14_cs", "m14_cn", "m30_cs", "m30_cn")

res = left.join(kaf, ["k", "a"], "left")
res = lookup(res, "e_", c("t"), sums + ["l_on"])
res = lookup(res, "h3_", s3, ["cs", "cn"])
temporal = []
for w in (3, 14, 30):
    temporal += aggs(tp, w, "e_", "h3_" if w == 3 else f"m{w}_", "m0_", "e_")
temporal.append(last_k(tp, "e_l_on", c("a") * DAY, "m0_l_all"))
res = res.select("row_id", *snap_names, *temporal)
res.write.mode("overwrite").parquet(out)
rows = spark.read.parquet(out).count()
elapsed = time.perf_counter() - t0


def jvm_peak_kb():
    """VmHWM of the JVM (a descendant of this process)."""
    best = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"java" in cmd and b"chronoflow-engine-bench" in cmd or (b"java" in cmd and st.get("PPid", "").strip() == str(os.getpid())):
            best = max(best, int(st.get("VmHWM", "0 kB").split()[0]))
    return best


report(elapsed, rows, jvm_peak_kb=jvm_peak_kb())
spark.stop()
