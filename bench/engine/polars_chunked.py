"""Polars split by key: polars_join.py's exact formulation, run on one slice of the keys at a time,
which is how a Polars user runs a Join whose events do not fit in memory (polars_join.py holds
about 30 bytes per event several times over: 2.9 GB at 10M events).

The events are first split by `user_id % N` into N Parquet files by Polars' streaming engine
(`sink_parquet` with `PartitionBy`, never the whole table in memory), N = events / CHUNK_EVENTS
rounded up (CHUNK_EVENTS, default 10,000,000, the size polars_join.py handles in ~3 GB). Then, per
slice, its events and the left rows with its keys go through `polars_join.join`, and the slice's
rows are written as one file of OUT (a directory). A key's events and left rows are all in one
slice, so the result is the same as one run over everything.

    python polars_chunked.py DATA_DIR OUT_DIR
"""

import glob
import math
import os
import shutil
import sys
import tempfile
import time

import polars as pl

from common import args, report
from polars_join import EVENT_COLUMNS, join, left_rows, usable

c = pl.col


def main():
    data, out = args()
    t0 = time.perf_counter()
    events = f"{data}/events.parquet"
    chunk_events = int(os.environ.get("CHUNK_EVENTS", "10000000"))
    n = max(1, math.ceil(pl.scan_parquet(events).select(pl.len()).collect().item() / chunk_events))
    left = pl.read_parquet(f"{data}/left.parquet", columns=["row_id", "user_id", "ts"])
    os.makedirs(out, exist_ok=True)
    split = tempfile.mkdtemp(prefix="polars_chunks_", dir=os.path.dirname(os.path.abspath(out)))
    try:
        (
            pl.scan_parquet(events)
            .select(EVENT_COLUMNS)
            .with_columns(chunk=c("user_id") % n)
            .sink_parquet(pl.PartitionBy(split, key="chunk", include_key=False), mkdir=True)
        )
        t_split = time.perf_counter() - t0
        rows = 0
        for i in range(n):
            files = glob.glob(f"{split}/chunk={i}/*.parquet")
            # Left rows without a key get no features; they ride in the first slice so the
            # output still has every left row, as polars_join's has.
            slice_keys = c("user_id") % n == i
            if i == 0:
                slice_keys = slice_keys | c("user_id").is_null()
            lf = left_rows(left.filter(slice_keys))
            if lf.height == 0:
                continue
            if not files:
                sys.exit(f"polars_chunked: slice {i} has left rows but no events (not handled)")
            ev = usable(pl.read_parquet(files))
            res = join(lf, ev)
            res.write_parquet(f"{out}/chunk_{i}.parquet")
            rows += res.height
            del ev, lf, res
    finally:
        shutil.rmtree(split, ignore_errors=True)
    report(time.perf_counter() - t0, rows, chunks=n, split_s=round(t_split, 3))


if __name__ == "__main__":
    main()
