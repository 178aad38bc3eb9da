"""DuckDB naive: the engine benchmark's Join as the direct translation of SPEC §4 (written from the
spec, not from chronoflow's code): each left row joined to every earlier event of its key (a range
join), one FILTERed aggregate per feature with the window's rounded start and rule 1's partition
bounds. It is the reference the other peers are checked against at small sizes. Its join holds
every (left row, earlier event) pair, so its memory grows with events x left rows / keys: about
20 GB at 10M events and 100 events per key; bench/engine.sh skips it above that.

    python duckdb_join.py DATA_DIR OUT.parquet
"""

import time

import duckdb

from common import DAY, K, WINDOWS, args, report

data, out = args()
t0 = time.perf_counter()
con = duckdb.connect()
con.execute("SET threads = 2")
# Spill (at 100M events) next to the data, not into the working directory.
con.execute(f"SET temp_directory = '{data}/duckdb.tmp'")


def features(prefix, end, a, cond_ts):
    """SUM/COUNT/AVERAGE over 3d/14d/30d and LAST_K(10), as of `a` with windows ending at `end`."""
    cols = []
    for w, hop in WINDOWS:
        start = f"floor(({end} - {w * DAY}) / {hop}) * {hop}"
        cond = f"{cond_ts} AND e.ts >= {start} AND e.p >= {a} - 1 - {w}"
        cols.append(f"CAST(SUM(e.value) FILTER (WHERE {cond}) AS BIGINT) AS {prefix}_value_sum_{w}d")
        cols.append(f"NULLIF(COUNT(e.value) FILTER (WHERE {cond}), 0) AS {prefix}_value_count_{w}d")
        cols.append(f"AVG(e.value) FILTER (WHERE {cond}) AS {prefix}_value_average_{w}d")
    cols.append(
        f"(list(e.value ORDER BY e.ts DESC, e.value DESC) FILTER (WHERE {cond_ts} AND e.value IS NOT NULL))[1:{K}] AS {prefix}_value_last{K}"
    )
    return cols


# SNAPSHOT part: the snapshot of d = ts_ds - 1, windows ending at epoch(ts_ds), partitions <= d.
snapshot = features("bench_snapshot_v1", "l.a * 86400000", "(l.a - 1)", "e.ts < l.a * 86400000 AND e.p <= l.a - 1")
# TEMPORAL part (Airbnb: the head is exclusive): windows ending at the left ts, partitions <= ts_ds.
temporal = features("bench_temporal_v1", "l.ts", "l.a", "e.ts < l.ts AND e.p <= l.a")
con.execute(f"""
CREATE TABLE result AS
WITH l AS (
  SELECT row_id, user_id, ts, CAST(floor(ts / {DAY}) AS BIGINT) AS a
  FROM read_parquet('{data}/left.parquet')
),
e AS (
  SELECT user_id, ts, value, CAST(date_diff('day', DATE '1970-01-01', CAST(ds AS DATE)) AS BIGINT) AS p
  FROM read_parquet('{data}/events.parquet')
)
SELECT l.row_id, {", ".join(snapshot + temporal)}
FROM l LEFT JOIN e ON e.user_id = l.user_id AND e.ts < l.ts AND e.p <= l.a
GROUP BY l.row_id
""")
con.execute(f"COPY result TO '{out}' (FORMAT parquet)")
rows = con.execute("SELECT count(*) FROM result").fetchone()[0]
report(time.perf_counter() - t0, rows)
