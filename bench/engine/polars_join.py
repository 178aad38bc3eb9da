"""Polars: the engine benchmark's Join, exact, with the same formulation as duckdb_fast.py (read its
docstring for why it is exact): running sums over the events sorted by (key, ts, value), read with
`join_asof` (backward, strict: ts < t) at each left row's ts, at its 3d window's hour-rounded start
and at the midnights of each (key, left day).

The asof key is one integer, key * 2^B + (ts - t_lo), so the events are sorted once and every asof is a
plain merge with no `by` groups. The running sums are global, not per key: every feature is a
difference of two lookups of the same key, and a lookup that finds no event of its key lands on the
previous key's last event, whose running sum is exactly the base the key starts from. LAST_K gathers
the 10 positions up to the match (and the 10 on-time ones) from one concatenated value column
(int_ranges, explode, gather, group_by), keeping those of the same key. Eager DataFrames, 2 threads.

    python polars_join.py DATA_DIR OUT.parquet
"""

import os
import sys
import time

os.environ.setdefault("POLARS_MAX_THREADS", "2")
import polars as pl  # noqa: E402

from common import DAY, HOUR, K, args, report  # noqa: E402

c = pl.col
EVENT_COLUMNS = ["user_id", "ts", "value", "ds"]


def left_rows(frame):
    """The left rows as the join reads them, sorted by key and time."""
    return frame.select("row_id", k=c("user_id"), t=c("ts"), a=c("ts") // DAY).sort("k", "t")


def usable(events):
    """The events a feature can count (a value, a time and a key)."""
    return events.filter(c("value").is_not_null() & c("ts").is_not_null() & c("user_id").is_not_null())


def join(left, ev):
    """Row_id and the 20 features of every row of `left` (from left_rows) over `ev` (usable
    events)."""
    # The composite key: B bits of time since t_lo (the earliest event, or the earliest lookup: a left
    # row's day - 30), the key above them.
    t_lo = min(ev["ts"].min(), (left["a"].min() - 30) * DAY) - 1
    t_hi = max(ev["ts"].max(), left["t"].max())
    k_lo, k_hi = min(ev["user_id"].min(), left["k"].min()), max(ev["user_id"].max(), left["k"].max())
    B = (t_hi - t_lo).bit_length()
    if k_lo < 0 or k_hi.bit_length() + B > 62:
        sys.exit("polars_join: keys and time span do not fit one 63-bit asof key")


    def kt(k, t):
        return k.cast(pl.Int64) * (1 << B) + (t - t_lo)


    ev = ev.select(
        kt=kt(c("user_id"), c("ts")),
        k=c("user_id"),
        ts=c("ts"),
        v=c("value"),
        late=c("ds").str.to_date("%Y-%m-%d").cast(pl.Int64) - c("ts") // DAY,
    ).sort("kt", "v")
    lo, hi = ev["late"].min(), ev["late"].max()
    if lo is not None and (lo < 0 or hi > 1):
        sys.exit(f"polars_join relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")

    # Global running sums and positions: g in ev, go in the on-time events (the same order). Only the
    # last row of each (k, ts) is kept for the asof joins, so a match is the newest event with ts < t.
    on = (c("late") == 0).cast(pl.Int64)
    last = (c("kt").shift(-1) != c("kt")).fill_null(True)
    c_all = ev.select(
        "kt",
        cs=c("v").cum_sum(),
        cls=(c("v") * c("late")).cum_sum(),
        cln=c("late").cum_sum(),
        g=pl.int_range(pl.len(), dtype=pl.Int64),
        go=on.cum_sum() - 1,
        _last=last,
    ).filter("_last").drop("_last").with_columns(cn=c("g") + 1)
    # One column for both lists: the on-time events, then all events (whose ts filter always passes).
    ev_on = ev.filter(c("late") == 0).select("k", "ts", "v")
    n_on = ev_on.height
    k_cat = pl.concat([ev_on["k"], ev["k"]])
    v_cat = pl.concat([ev_on["v"], ev["v"]])
    ts_cat = pl.concat([ev_on["ts"], pl.repeat(2**62, ev.height, dtype=pl.Int64, eager=True)])
    del ev, ev_on

    ka = left.select("k", "a").unique().sort("k", "a")
    SUMS = ["cs", "cn", "cls", "cln"]


    def asof(frame, t_expr, prefix, cols):
        """frame + the running values (cols) at the newest event before (k, t_expr), prefixed."""
        got = frame.with_columns(_kt=kt(c("k"), t_expr)).join_asof(
            c_all, left_on="_kt", right_on="kt", strategy="backward", allow_exact_matches=False,
            check_sortedness=False,
        )
        fill = {"g": -1, "go": -1}
        return got.select(*frame.columns, *[c(x).fill_null(fill.get(x, 0)).alias(prefix + x) for x in cols])


    def last_k(frame, name, on_prefix, day_start, all_prefix, chunk=2_000_000):
        """On-time events from day_start on (newest first), then the K newest events, cut to K: the K
        on-time positions up to go, then the K positions up to g, those of the row's key. In chunks of
        rows, so the exploded candidates (20 a row) stay small."""

        def newest(top, offset):
            return pl.int_ranges(c(top), pl.max_horizontal(c(top) - K, pl.lit(-1)), -1, dtype=pl.Int64) + offset

        parts = []
        for off in range(0, frame.height, chunk):
            long = (
                frame.slice(off, chunk).select(
                    "k",
                    idx=pl.concat_list(newest(f"{on_prefix}go", 0), newest(f"{all_prefix}g", n_on)),
                    min_ts=c(day_start),
                )
                .with_row_index("row")
                .explode("idx", empty_as_null=True)
            )
            idx = long["idx"].cast(pl.UInt32)
            long = long.with_columns(ek=k_cat.gather(idx), v=v_cat.gather(idx), ts=ts_cat.gather(idx))
            keep = (c("ek") == c("k")) & (c("ts") >= c("min_ts"))
            parts.append(
                long.group_by("row", maintain_order=True).agg(pl.when(keep).then(c("v")).drop_nulls().head(K).alias("l"))["l"]
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
    kaf = asof(ka, c("a") * DAY, "m0_", SUMS + ["g", "go"])
    kaf = asof(kaf, (c("a") - 1) * DAY, "m1_", SUMS + ["g"])
    for o in (3, 14, 30):
        kaf = asof(kaf, (c("a") - o) * DAY, f"m{o}_", ["cs", "cn"])
    snap = []
    for w in (3, 14, 30):
        snap += aggs(sp, w, "m0_", f"m{w}_", "m1_", "m0_")
    kaf = kaf.with_columns(snap, _d1=(c("a") - 1) * DAY)
    kaf = kaf.with_columns(last_k(kaf, sp, "m0_", "_d1", "m1_"))
    snap_names = [e.meta.output_name() for e in snap] + [f"{sp}_last{K}"]
    kaf = kaf.select("k", "a", *snap_names, "m0_cls", "m0_cln", "m0_g", "m14_cs", "m14_cn", "m30_cs", "m30_cn")

    # Per left row: the running values at its ts and at the 3d window's start (same order as t).
    res = asof(left, c("t"), "e_", SUMS + ["go"])
    res = asof(res, (c("t") - 3 * DAY) // HOUR * HOUR, "h3_", ["cs", "cn"])
    res = res.join(kaf, on=["k", "a"], how="left")
    temporal = []
    for w in (3, 14, 30):
        temporal += aggs(tp, w, "e_", "h3_" if w == 3 else f"m{w}_", "m0_", "e_")
    res = res.with_columns(temporal, _d0=c("a") * DAY)
    res = res.with_columns(last_k(res, tp, "e_", "_d0", "m0_"))
    res = res.select("row_id", *snap_names, *[e.meta.output_name() for e in temporal], f"{tp}_last{K}")
    return res


if __name__ == "__main__":
    data, out = args()
    t0 = time.perf_counter()
    left = left_rows(pl.read_parquet(f"{data}/left.parquet", columns=["row_id", "user_id", "ts"]))
    ev = usable(pl.read_parquet(f"{data}/events.parquet", columns=EVENT_COLUMNS))
    res = join(left, ev)
    res.write_parquet(out)
    report(time.perf_counter() - t0, res.height)
