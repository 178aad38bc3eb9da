"""Apache Spark 4 (PySpark 4.3.0, local[2]): the engine benchmark's Join, exact, in DataFrames and
window functions, with the same formulation as duckdb_fast.py (read its docstring for why it is
exact). Spark has no ASOF join, so the lookup "the key's running values over events with ts < t" is
a union of the events (one row per (key, ts), carrying the running sums and rank) and the lookup
points, sorted per key by (ts, points first), where each point takes the last event row's values
(`last(..., ignorenulls)` over the rows before it). LAST_K fetches the events of ranks r, r-1, ...,
r-9 (and likewise for on-time events) by an equi-join on (key, rank): one join for the lists of
all events, one for the on-time ones.

    python spark_join.py DATA_DIR OUT.parquet

compute_s leaves out the JVM start (about 7 s); the process's wall time includes it. The RESULT line
also carries the JVM's peak RSS (jvm_peak_kb): the JVM is not a waited-for child of this process,
so /usr/bin/time does not see it.
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
    .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"))
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

# One pass per key in (ts, v) order: rank r, running sums of all and of late events.
w1 = Window.partitionBy("k").orderBy("ts", "v")
run = w1.rowsBetween(Window.unboundedPreceding, Window.currentRow)
ev = ev.select(
    "k", "ts", "v", "late",
    F.row_number().over(w1).alias("r"),
    F.sum("v").over(run).alias("cs"),
    F.sum(c("v") * c("late")).over(run).alias("cls"),
    F.sum("late").over(run).alias("cln"),
    F.lead("ts").over(w1).alias("next_ts"),
).cache()
lo, hi = ev.agg(F.min("late"), F.max("late")).first()
if lo is not None and (lo < 0 or hi > 1):
    sys.exit(f"spark_join relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")
# The last event of each (k, ts): what a lookup at t > ts sees.
c_all = ev.where(c("next_ts").isNull() | (c("next_ts") != c("ts"))).select(
    "k", "ts", "cs", c("r").alias("cn"), "cls", "cln"
)
e_all = ev.select("k", "r", "ts", "v")
e_on = ev.where(c("late") == 0).select("k", (c("r") - c("cln")).alias("r"), "ts", "v")

left = spark.read.parquet(f"{data}/left.parquet").select(
    "row_id", c("user_id").alias("k"), c("ts").alias("t"), F.floor(c("ts") / DAY).cast("long").alias("a")
)
ka = left.select("k", "a").distinct()
mids = [0, 1, 3, 14, 30]
s3 = (F.floor((c("t") - 3 * DAY) / HOUR) * HOUR).cast("long")
# Lookup points: per left row its ts (tag 0) and the 3d window's start (tag 1); per (key, left day)
# the midnights of a - o (tag 2, o).
pts = (
    left.select("k", c("t").alias("ts"), "row_id", "a", F.lit(0).alias("tag"), F.lit(None).cast("int").alias("o"))
    .unionByName(left.select("k", s3.alias("ts"), "row_id", "a", F.lit(1).alias("tag"), F.lit(None).cast("int").alias("o")))
    .unionByName(
        ka.crossJoin(spark.createDataFrame([(o,) for o in mids], "o int"))
        .select("k", ((c("a") - c("o")) * DAY).alias("ts"), F.lit(None).cast("long").alias("row_id"), "a",
                F.lit(2).alias("tag"), "o")
    )
)
u = c_all.withColumn("kind", F.lit(1)).unionByName(pts.withColumn("kind", F.lit(0)), allowMissingColumns=True)
w2 = Window.partitionBy("k").orderBy("ts", "kind").rowsBetween(Window.unboundedPreceding, -1)
sums = ["cs", "cn", "cls", "cln"]
at = (
    u.select("k", "kind", "row_id", "a", "tag", "o", *[F.last(x, ignorenulls=True).over(w2).alias(x) for x in sums])
    .where(c("kind") == 0)
    .select("k", "row_id", "a", "tag", "o", *[F.coalesce(c(x), F.lit(0)).alias(x) for x in sums])
    .cache()
)
# Pivot the lookups: per (key, left day) the midnights m{o}_{x}; per left row its ts (e_) and the 3d
# window's start (h3_).
kam = at.where(c("tag") == 2).groupBy("k", "a").agg(
    *[F.max(F.when(c("o") == o, c(x))).alias(f"m{o}_{x}") for o in mids for x in sums]
)
rows = at.where(c("tag") < 2).groupBy("row_id", "k", "a").agg(
    *[F.max(F.when(c("tag") == 0, c(x))).alias(f"e_{x}") for x in sums],
    *[F.max(F.when(c("tag") == 1, c(x))).alias(f"h3_{x}") for x in ("cs", "cn")],
)


def gather(points, events, group, lists):
    """points: (k, top, o, min_ts, group...) -> per group, for each o in lists, the K newest events up
    to rank `top` of the key with ts >= min_ts, newest first (a list per o)."""
    p = points.where(c("top") > 0).select("*", F.explode(F.sequence(F.lit(0), F.lit(K - 1))).alias("i")).alias("p")
    e = events.alias("e")
    j = p.join(e, (c("e.k") == c("p.k")) & (c("e.r") == c("p.top") - c("p.i")) & (c("e.ts") >= c("p.min_ts")))
    j = j.select(*[c(f"p.{x}") for x in group], F.struct(c("p.o").alias("o"), c("p.i").alias("i"), c("e.v").alias("v")).alias("x"))
    got = F.array_sort(F.collect_list("x"))

    def of(o):  # (a one-argument lambda: PySpark reads a second parameter as the element's index)
        return F.transform(F.filter(got, lambda x: x["o"] == o), lambda x: x["v"])

    return j.groupBy(*group).agg(*[of(o).alias(name) for o, name in lists])


# Lists: snapshot = on-time events of day a-1 (newest first) then the 10 newest before midnight of
# a-1; temporal = on-time events of day a before ts, then the 10 newest before midnight of a.
all_pts = kam.select("k", "a", c("m0_cn").alias("top"), F.lit(0).alias("o"), F.lit(-(2**62)).alias("min_ts")).unionByName(
    kam.select("k", "a", c("m1_cn").alias("top"), F.lit(1).alias("o"), F.lit(-(2**62)).alias("min_ts")))
g_all = gather(all_pts, e_all, ["k", "a"], [(0, "l_m0"), (1, "l_m1")])
on_pts = kam.select("k", c("a").alias("id"), (c("m0_cn") - c("m0_cln")).alias("top"), F.lit(0).alias("o"),
                    ((c("a") - 1) * DAY).alias("min_ts")).unionByName(
    rows.select("k", c("row_id").alias("id"), (c("e_cn") - c("e_cln")).alias("top"), F.lit(1).alias("o"),
                (c("a") * DAY).alias("min_ts")))
g_on = gather(on_pts, e_on, ["k", "id", "o"], [(0, "l_o0"), (1, "l_lo")])
kam_l = (
    kam.join(g_all, ["k", "a"], "left")
    .join(g_on.where(c("o") == 0).select("k", c("id").alias("a"), "l_o0"), ["k", "a"], "left")
)
rows_l = rows.join(g_on.where(c("o") == 1).select(c("id").alias("row_id"), "l_lo"), "row_id", "left")


def aggs(name, w, end, start, late_from, late_to):
    s = c(f"{end}cs") - c(f"{start}cs") - (c(f"{late_to}cls") - c(f"{late_from}cls"))
    n = c(f"{end}cn") - c(f"{start}cn") - (c(f"{late_to}cln") - c(f"{late_from}cln"))
    return [
        F.when(n > 0, s).cast("long").alias(f"{name}_sum_{w}d"),
        F.when(n > 0, n).cast("long").alias(f"{name}_count_{w}d"),
        F.when(n > 0, s.cast("double") / n).alias(f"{name}_average_{w}d"),
    ]


def last_k(name, on_list, all_list):
    merged = F.slice(F.concat(F.coalesce(c(on_list), F.array()), F.coalesce(c(all_list), F.array())), 1, K)
    return F.when(F.size(merged) > 0, merged).alias(f"{name}_last{K}")


sp, tp = "bench_snapshot_v1_value", "bench_temporal_v1_value"
cols = []
for w in (3, 14, 30):
    cols += aggs(sp, w, "m0_", f"m{w}_", "m1_", "m0_")
cols.append(last_k(sp, "l_o0", "l_m1"))
for w in (3, 14, 30):
    cols += aggs(tp, w, "e_", "h3_" if w == 3 else f"m{w}_", "m0_", "e_")
cols.append(last_k(tp, "l_lo", "l_m0"))
res = rows_l.join(kam_l, ["k", "a"], "left").select("row_id", *cols)
res.write.mode("overwrite").parquet(out)
rows = spark.read.parquet(out).count()
elapsed = time.perf_counter() - t0


def jvm_peak_kb():
    """VmHWM of this session's JVM (found by its app name on the command line or as our child)."""
    best = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if b"java" in cmd and st.get("PPid", "").strip() == str(os.getpid()):
            best = max(best, int(st.get("VmHWM", "0 kB").split()[0]))
    return best


report(elapsed, rows, jvm_peak_kb=jvm_peak_kb())
spark.stop()
