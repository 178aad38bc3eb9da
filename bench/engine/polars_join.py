"""Polars: the engine benchmark's Join, exact, with the same formulation as duckdb_fast.py (read its
docstring for why it is exact): per-key running sums over the events sorted by (ts, value),
`join_asof` (backward, strict: ts < t) to read them at each left row's ts, at its 3d window's
hour-rounded start and at the midnights of each (key, left day). LAST_K gathers, by row position,
the 10 events (and the 10 on-time events) up to the matched one within the same key (int_ranges,
explode, gather, group_by), instead of keeping a list per event. Eager DataFrames, 2 threads.

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

# Row positions: g in ev, and for on-time rows go, their position in ev_on (the on-time rows in the
# same order). kst / kst_on: the key's first position in each. Running sums per key. Only the last
# row of each (k, ts) is kept for the asof joins, so a match is the newest event with ts < t.
on = (c("late") == 0).cast(pl.Int64)
ev = ev.with_columns(g=pl.int_range(pl.len(), dtype=pl.Int64), on_cum=on.cum_sum())
last = ((c("k").shift(-1) != c("k")) | (c("ts").shift(-1) != c("ts"))).fill_null(True)
c_all = ev.select(
    "k", "ts",
    cs=c("v").cum_sum().over("k"),
    cn=c("v").cum_count().over("k"),
    cls=(c("v") * c("late")).cum_sum().over("k"),
    cln=c("late").cum_sum().over("k"),
    g="g",
    kst=c("g").first().over("k"),
    go=c("on_cum") - 1,
    kst_on=(c("on_cum") - on).first().over("k"),
    _last=last,
).filter("_last").drop("_last")
# One value column for both lists: the on-time events, then all events (whose ts filter always passes).
ev_on = ev.filter(c("late") == 0).select("ts", "v")
n_on = ev_on.height
v_cat = pl.concat([ev_on["v"], ev["v"]])
ts_cat = pl.concat([ev_on["ts"], pl.repeat(2**62, ev.height, dtype=pl.Int64, eager=True)])
del ev, ev_on

left = (
    pl.read_parquet(f"{data}/left.parquet", columns=["row_id", "user_id", "ts"])
    .select("row_id", k=c("user_id"), t=c("ts"), a=c("ts") // DAY)
    .sort("k", "t")
)
ka = left.select("k", "a").unique().sort("k", "a")
RUN = ["cs", "cn", "cls", "cln", "g", "kst", "go", "kst_on"]


def asof(frame, t_expr, prefix, cols):
    """frame + the running values (cols) at the newest event with ts < t_expr, prefixed."""
    pts = frame.with_columns(_t=t_expr)
    got = pts.join_asof(
        c_all, left_on="_t", right_on="ts", by="k", strategy="backward", allow_exact_matches=False,
        check_sortedness=False,
    )
    sums = [x for x in cols if x in ("cs", "cn", "cls", "cln")]
    return got.select(*frame.columns, *[(c(x).fill_null(0) if x in sums else c(x)).alias(prefix + x) for x in cols])


def last_k(frame, name, on_prefix, day_start, all_prefix, chunk=2_000_000):
    """On-time events from day_start on (newest first), then the K newest events, cut to K.
    Candidates are contiguous positions: the K on-time events up to position go (same key), then the
    K events up to position g, indexed into one concatenated value column. In chunks of rows, so the
    exploded candidates (20 a row) stay small."""

    def newest(top, start, offset):
        hi = c(top).fill_null(-1)
        lo = pl.max_horizontal(hi - K, c(start).fill_null(0) - 1)
        return pl.int_ranges(hi, lo, -1, dtype=pl.Int64) + offset

    parts = []
    for off in range(0, frame.height, chunk):
        long = (
            frame.slice(off, chunk).select(
                idx=pl.concat_list(newest(f"{on_prefix}go", f"{on_prefix}kst_on", 0),
                                   newest(f"{all_prefix}g", f"{all_prefix}kst", n_on)),
                min_ts=c(day_start),
            )
            .with_row_index("row")
            .explode("idx", empty_as_null=True)
        )
        idx = long["idx"].cast(pl.UInt32)
        long = long.with_columns(v=v_cat.gather(idx), ts=ts_cat.gather(idx))
        parts.append(
            long.group_by("row", maintain_order=True)
            .agg(pl.when(c("ts") >= c("min_ts")).then(c("v")).drop_nulls().head(K).alias("l"))["l"]
        )
    lists = pl.concat(parts) if parts else pl.Series("l", [], dtype=pl.List(v_cat.dtype))
    return pl.select(pl.when(lists.list.len() > 0).then(lists)).to_series().alias(f"{name}_last{K}")


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
# Per (key, left day): the running values at the midnights of a, a-1, a-3, a-14, a-30.
kaf = asof(ka, c("a") * DAY, "m0_", RUN)
kaf = asof(kaf, (c("a") - 1) * DAY, "m1_", RUN)
for o in (3, 14, 30):
    kaf = asof(kaf, (c("a") - o) * DAY, f"m{o}_", ["cs", "cn"])
snap = []
for w in (3, 14, 30):
    snap += aggs(sp, w, "m0_", f"m{w}_", "m1_", "m0_")
kaf = kaf.with_columns(snap, _d1=(c("a") - 1) * DAY)
kaf = kaf.with_columns(last_k(kaf, sp, "m0_", "_d1", "m1_"))
snap_names = [e.meta.output_name() for e in snap] + [f"{sp}_last{K}"]
kaf = kaf.select("k", "a", *snap_names, "m0_cls", "m0_cln", "m0_g", "m0_kst", "m14_cs", "m14_cn", "m30_cs", "m30_cn")

# Per left row: the running values at its ts and at the 3d window's start (same order as t).
res = asof(left, c("t"), "e_", RUN)
res = asof(res, (c("t") - 3 * DAY) // HOUR * HOUR, "h3_", ["cs", "cn"])
res = res.join(kaf, on=["k", "a"], how="left")
temporal = []
for w in (3, 14, 30):
    temporal += aggs(tp, w, "e_", "h3_" if w == 3 else f"m{w}_", "m0_", "e_")
res = res.with_columns(temporal, _d0=c("a") * DAY)
res = res.with_columns(last_k(res, tp, "e_", "_d0", "m0_"))
res = res.select("row_id", *snap_names, *[e.meta.output_name() for e in temporal], f"{tp}_last{K}")
res.write_parquet(out)
report(time.perf_counter() - t0, res.height)
