"""The engine benchmark's peer: DuckDB computing the same training set as chronoflow, with SQL
written from SPEC §4 (not from chronoflow's code), over the same Parquet files; then a value-by-value
comparison with chronoflow's output.

    python duckdb_join.py DATA_DIR CHRONOFLOW_OUTPUT_GLOB
"""

import sys
import time

import duckdb

DAY = 86_400_000
HOUR = 3_600_000
data, ours = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2")


def features(prefix, end, a, cond_ts):
    """SUM/COUNT/AVERAGE over 3d/14d/30d and LAST_K(10), as of `a` with windows ending at `end`."""
    cols = []
    for w, hop in ((3, HOUR), (14, DAY), (30, DAY)):
        start = f"floor(({end} - {w * DAY}) / {hop}) * {hop}"
        cond = f"{cond_ts} AND e.ts >= {start} AND e.p >= {a} - 1 - {w}"
        cols.append(f"SUM(e.value) FILTER (WHERE {cond}) AS {prefix}_value_sum_{w}d")
        cols.append(f"NULLIF(COUNT(e.value) FILTER (WHERE {cond}), 0) AS {prefix}_value_count_{w}d")
        cols.append(f"AVG(e.value) FILTER (WHERE {cond}) AS {prefix}_value_average_{w}d")
    cols.append(
        f"(list(e.value ORDER BY e.ts DESC, e.value DESC) FILTER (WHERE {cond_ts} AND e.value IS NOT NULL))[1:10] AS {prefix}_value_last10"
    )
    return cols


# SNAPSHOT part: the snapshot of d = ts_ds - 1, windows ending at epoch(ts_ds), partitions <= d.
snapshot = features("bench_snapshot_v1", "l.a * 86400000", "(l.a - 1)", "e.ts < l.a * 86400000 AND e.p <= l.a - 1")
# TEMPORAL part (Airbnb: the head is exclusive): windows ending at the left ts, partitions <= ts_ds.
temporal = features("bench_temporal_v1", "l.ts", "l.a", "e.ts < l.ts AND e.p <= l.a")
sql = f"""
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
"""
t = time.perf_counter()
con.execute(sql)
elapsed = time.perf_counter() - t
rows = con.execute("SELECT count(*) FROM result").fetchone()[0]
print(f"duckdb: {rows} rows in {elapsed:.2f} s")

features_cols = [c[0] for c in con.execute("DESCRIBE result").fetchall() if c[0] != "row_id"]
con.execute(f"CREATE TABLE ours AS SELECT * FROM read_parquet('{ours}', hive_partitioning = true)")
ours_rows = con.execute("SELECT count(*) FROM ours").fetchone()[0]
checks = []
for c in features_cols:
    if "average" in c:
        same = f"((r.{c} IS NULL AND o.{c} IS NULL) OR abs(r.{c} - o.{c}) <= 1e-9 * abs(r.{c}))"
    else:
        same = f"(r.{c} IS NOT DISTINCT FROM o.{c})"
    checks.append(f"SUM(CASE WHEN {same} THEN 0 ELSE 1 END) AS {c}")
diff = con.execute(f"SELECT count(*), {', '.join(checks)} FROM result r FULL JOIN ours o USING (row_id)").fetchone()
mismatches = {c: n for c, n in zip(features_cols, diff[1:]) if n}
print(f"compared {diff[0]} rows x {len(features_cols)} features (chronoflow wrote {ours_rows} rows): "
      + ("identical" if not mismatches and ours_rows == rows else f"MISMATCHES {mismatches}"))
