"""Polars: the engine benchmark's Join, exact, with the same formulation as duckdb_fast.py (read its
docstring for why it is exact): per-key running sums over the events sorted by (ts, value),
`join_asof` (backward, strict: ts < t) to read them at each left row's ts, at the 3d window's
hour-rounded start and at the midnights of each (key, left day); LAST_K gathers the 10 events before
the matched one (same key) instead of keeping a list per event. Eager DataFrames, 2 threads.

    python polars_join.py DATA_DIR OUT.parquet
"""

import os
import sys
import time

os.environ.setdefault("POLARS_MAX_THREADS", "2")
import polars as pl  # noqa: E402

from common import DAY, HOUR, K, args, report  # noqa: E402

data, out = args()
t0 = time.perf_counter()
c = pl.col

ev = (
    pl.read_parquet(f"{data}/events.parquet", columns=["user_id", "ts", "value", "ds"])
    .filter(c("value").is_not_null() & c("ts").is_not_null() & c("user_id").is_not_null())
    .select(
        k=c("user_id"),
        ts=c("ts"),
        v=c("value"),
        late=c("ds").str.to_date("%Y-%m-%d").cast(pl.Int64) - c("ts") // DAY,
    )
    .sort("k", "ts", "v")
)
lo, hi = ev["late"].min(), ev["late"].max()
if lo is not None and (lo < 0 or hi > 1):
    sys.exit(f"polars_join relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")


def running(frame, sums):
    """Row index, the key's first row index, and (if sums) running sums; then only the last row of
    each (k, ts), so an asof match is the last event with ts < t in (ts, value) order."""
    frame = frame.with_row_index("idx").with_columns(c("idx").cast(pl.Int64))
    frame = frame.with_columns(kstart=c("idx").first().over("k"))
    if sums:
        frame = frame.with_columns(
            cs=c("v").cum_sum().over("k"),
            cn=c("v").cum_count().over("k"),
            cls=(c("v") * c("late")).cum_sum().over("k"),
            cln=c("late").cum_sum().over("k"),
        )
    last = (c("k").shift(-1) != c("k")) | (c("ts").shift(-1) != c("ts"))
    keep = ["k", "ts", "idx", "kstart"] + (["cs", "cn", "cls", "cln"] if sums else [])
    return frame.filter(last.fill_null(True)).select(keep)


ev_on = ev.filter(c("late") == 0)
c_all = running(ev, True)
c_on = running(ev_on, False)
v_all, v_on, ts_on = ev["v"], ev_on["v"], ev_on["ts"]

left = pl.read_parquet(f"{data}/left.parquet", columns=["row_id", "user_id", "ts"]).select(
    "row_id", k=c("user_id"), t=c("ts"), a=c("ts") // DAY
)
ka = left.select("k", "a").unique()
mid = [0, 1, 3, 14, 30]
pts = pl.concat(
    [left.select("k", "t"), left.select("k", t=(c("t") - 3 * DAY) // HOUR * HOUR)]
    + [ka.select("k", t=(c("a") - o) * DAY) for o in mid]
).unique().sort("k", "t")


def asof(points, running_frame):
    return points.join_asof(
        running_frame, left_on="t", right_on="ts", by="k", strategy="backward", allow_exact_matches=False,
        check_sortedness=False,
    ).drop("ts").with_columns(pl.col("cs", "cn", "cls", "cln").fill_null(0) if "cs" in running_frame.columns else [])


at_all = asof(pts, c_all)
pts_on = pl.concat([left.select("k", "t"), ka.select("k", t=c("a") * DAY)]).unique().sort("k", "t")
at_on = asof(pts_on, c_on)


def lookup(frame, table, prefix, t_expr, key="k"):
    """Joins `table`'s row at (k, t_expr) to frame, its columns prefixed."""
    frame = frame.with_columns(_t=t_expr)
    tbl = table.rename({col: f"{prefix}{col}" for col in table.columns if col not in ("k", "t")})
    return frame.join(tbl, left_on=[key, "_t"], right_on=["k", "t"], how="left").drop("_t")


def gathered(frame, idx, kstart, values, ts=None, min_ts=None, tag=""):
    """The K values before and at row `idx` of `values` within the key (newest first), null where
    there is none (or, with ts, where the event is before min_ts)."""
    out = []
    for i in range(K):
        j = frame.select(pl.when(c(idx) - i >= c(kstart)).then(c(idx) - i))[idx].cast(pl.UInt32)
        val = values.gather(j)
        if ts is not None:
            val = pl.select(pl.when(ts.gather(j) >= frame[min_ts]).then(val)).to_series()
        out.append(val.alias(f"_{tag}{i}"))
    return out


def last_k(frame, on_idx, on_kstart, day_start, all_idx, all_kstart):
    cols = gathered(frame, on_idx, on_kstart, v_on, ts_on, day_start, "on") + gathered(frame, all_idx, all_kstart, v_all)
    lst = pl.DataFrame(cols).select(pl.concat_list(pl.all()).list.drop_nulls().list.head(K).alias("l"))["l"]
    return pl.select(pl.when(lst.list.len() > 0).then(lst)).to_series()


def aggs(name, w, end, start, late_from, late_to):
    s = c(f"{end}cs") - c(f"{start}cs") - (c(f"{late_to}cls") - c(f"{late_from}cls"))
    n = c(f"{end}cn") - c(f"{start}cn") - (c(f"{late_to}cln") - c(f"{late_from}cln"))
    some = n > 0
    return [
        pl.when(some).then(s).alias(f"{name}_sum_{w}d"),
        pl.when(some).then(n).cast(pl.Int64).alias(f"{name}_count_{w}d"),
        pl.when(some).then(s.cast(pl.Float64) / n).alias(f"{name}_average_{w}d"),
    ]


sp, tp = "bench_snapshot_v1_value", "bench_temporal_v1_value"
kaf = ka
for o in mid:
    kaf = lookup(kaf, at_all, f"m{o}_", (c("a") - o) * DAY)
kaf = lookup(kaf, at_on, "o0_", c("a") * DAY)
snap = []
for w in (3, 14, 30):
    snap += aggs(sp, w, "m0_", f"m{w}_", "m1_", "m0_")
kaf = kaf.with_columns(snap, _d1=(c("a") - 1) * DAY)
kaf = kaf.with_columns(last_k(kaf, "o0_idx", "o0_kstart", "_d1", "m1_idx", "m1_kstart").alias(f"{sp}_last{K}"))
snap_names = [e.meta.output_name() for e in snap] + [f"{sp}_last{K}"]
kaf = kaf.select("k", "a", *snap_names, "m0_cls", "m0_cln", "m0_idx", "m0_kstart", "m14_cs", "m14_cn", "m30_cs", "m30_cn")

res = left.join(kaf, on=["k", "a"], how="left")
res = lookup(res, at_all, "e_", c("t"))
res = lookup(res, at_all, "h3_", (c("t") - 3 * DAY) // HOUR * HOUR)
res = lookup(res, at_on, "o_", c("t"))
temporal = []
for w in (3, 14, 30):
    temporal += aggs(tp, w, "e_", "h3_" if w == 3 else f"m{w}_", "m0_", "e_")
res = res.with_columns(temporal, _d0=c("a") * DAY)
res = res.with_columns(last_k(res, "o_idx", "o_kstart", "_d0", "m0_idx", "m0_kstart").alias(f"{tp}_last{K}"))
res = res.select("row_id", *snap_names, *[e.meta.output_name() for e in temporal], f"{tp}_last{K}")
res.write_parquet(out)
report(time.perf_counter() - t0, res.height)
