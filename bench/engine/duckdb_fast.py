"""DuckDB fast: the engine benchmark's Join, exact, by prefix sums and ASOF joins instead of the range
join of duckdb_join.py.

Why it is exact (SPEC §4.2-4.3). Events with a null value count for nothing, so they are dropped. The
data has partition p = day(ts) or day(ts) + 1 (late); that is checked, and everything below relies
on it. For a left row at q (day a):
- TEMPORAL: an event counts iff ts < q and p <= a. Every event of an earlier day has p <= a, so the
  only events before q that do not count are the late ones of day a. Window start s = round(q - W, hop)
  is at or after midnight of a - W, so rule 1's lower bound p >= a - 1 - W always holds. Hence
  SUM = C(q) - C(s) - (Clate(q) - Clate(a)), where C(t) is the key's sum over events with ts < t
  (likewise COUNT; AVERAGE = SUM / COUNT).
- SNAPSHOT (as of a - 1, windows ending at midnight of a): events with ts < midnight(a) and p <= a - 1,
  i.e. all of them but the late events of day a - 1: C(a) - C(a - W) - (Clate(a) - Clate(a - 1)).
- LAST_K(10) over (ts desc, value desc): the counted events are all events before midnight of the
  last day plus the on-time events of that day before the end, and the latter are all newer. So
  LAST_K = (on-time events of the last day among the 10 newest on-time events before the end)
  followed by the 10 newest events before midnight, cut to 10.
C(t) is looked up by one ASOF join for every point (the last event with ts < t) into per-key running
sums kept at the last event of each (key, ts) in (ts, value) order. That event's rank r in its key gives the list:
the events of ranks r, r-1, ..., r-9, fetched by an equi-join on (key, rank); likewise for on-time
events with their own rank (the running count of on-time events).
Lookups at midnights are made once per (key, left day), not per left row.

    python duckdb_fast.py DATA_DIR OUT.parquet
"""

import sys
import time

import duckdb

from common import DAY, HOUR, K, args, report

data, out = args()
t0 = time.perf_counter()
con = duckdb.connect()
con.execute("SET threads = 2")
# Spill (at 100M events) next to the data, not into the working directory.
con.execute(f"SET temp_directory = '{data}/duckdb.tmp'")
con.execute("SET preserve_insertion_order = false")
q = con.execute

q(f"""CREATE TEMP TABLE ev0 AS
SELECT user_id AS k, ts, value AS v,
       CAST(date_diff('day', DATE '1970-01-01', CAST(ds AS DATE)) AS BIGINT) - (ts // {DAY}) AS late
FROM read_parquet('{data}/events.parquet') WHERE value IS NOT NULL AND ts IS NOT NULL AND user_id IS NOT NULL""")
lo, hi = q("SELECT min(late), max(late) FROM ev0").fetchone()
if lo is not None and (lo < 0 or hi > 1):
    sys.exit(f"duckdb_fast relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")

# One pass over each key's events in (ts, value) order: r is the event's rank in the key, ro its rank
# among the key's on-time events (for on-time events), cs/cn/cls/cln the running sums and counts of
# all and of late events. c_all keeps the last event of each (k, ts), so an ASOF match is unambiguous;
# at a lookup point, cn is the rank of the newest event before it and cn - cln that of the newest
# on-time event.
q("""CREATE TEMP TABLE ev AS
SELECT k, ts, v, late, row_number() OVER w AS r,
  sum(v) OVER w AS cs, sum(v * late) OVER w AS cls, sum(late) OVER w AS cln, lead(ts) OVER w AS next_ts
FROM ev0 WINDOW w AS (PARTITION BY k ORDER BY ts, v ROWS UNBOUNDED PRECEDING)""")
q("CREATE TEMP TABLE c_all AS SELECT k, ts, cs, r AS cn, cls, cln FROM ev WHERE next_ts IS DISTINCT FROM ts")
q("CREATE TEMP TABLE e_all AS SELECT k, r, v FROM ev")
q("CREATE TEMP TABLE e_on AS SELECT k, r - cln AS r, ts, v FROM ev WHERE late = 0")

q(f"""CREATE TEMP TABLE l AS
SELECT row_id, user_id AS k, ts AS t, ts // {DAY} AS a FROM read_parquet('{data}/left.parquet')""")
q("CREATE TEMP TABLE ka AS SELECT DISTINCT k, a FROM l")

# Every lookup in one ASOF join: per left row its ts (o = -1) and the 3d window's hour-rounded start
# (o = -2), id = row_id; per (key, left day) the midnights of a - o, id = a.
mids = (0, 1, 3, 14, 30)
q(f"""CREATE TEMP TABLE lk AS
SELECT p.k, p.id, p.o, coalesce(c.cs, 0) AS cs, coalesce(c.cn, 0) AS cn,
       coalesce(c.cls, 0) AS cls, coalesce(c.cln, 0) AS cln
FROM (SELECT k, t, row_id AS id, -1 AS o FROM l
      UNION ALL SELECT k, (t - {3 * DAY}) // {HOUR} * {HOUR}, row_id, -2 FROM l
      UNION ALL SELECT k, (a - o) * {DAY}, a, o FROM ka, (VALUES {", ".join(f"({o})" for o in mids)}) AS d(o)) p
ASOF LEFT JOIN c_all c ON p.k = c.k AND p.t > c.ts""")
pivot = ", ".join(f"any_value({x}) FILTER (WHERE o = {o}) AS m{o}_{x}" for o in mids for x in ("cs", "cn", "cls", "cln"))
q(f"CREATE TEMP TABLE kam AS SELECT k, id AS a, {pivot} FROM lk WHERE o >= 0 GROUP BY k, id")
q("CREATE TEMP TABLE le AS SELECT id AS row_id, k, cs, cn, cls, cln FROM lk WHERE o = -1")
q("CREATE TEMP TABLE lh AS SELECT id AS row_id, cs, cn FROM lk WHERE o = -2")


def gather(points, events, with_ts):
    """Per point (k, id, o, top[, min_ts]): the K newest events up to rank `top` of the key, newest
    first, only those with ts >= min_ts if with_ts; no row where there are none."""
    cond = " AND e.ts >= p.min_ts" if with_ts else ""
    return f"""SELECT p.k, p.id, p.o, list(e.v ORDER BY p.i) AS l
      FROM (SELECT *, unnest(range({K})) AS i FROM ({points}) WHERE top > 0) p
      JOIN {events} e ON e.k = p.k AND e.r = p.top - p.i{cond}
      GROUP BY p.k, p.id, p.o"""


# Lists: snapshot = on-time events of day a-1 (newest first) then the 10 newest before midnight of
# a-1; temporal = on-time events of day a before ts, then the 10 newest before midnight of a.
q(f"""CREATE TEMP TABLE g_all AS {gather(
    "SELECT k, a AS id, 0 AS o, m0_cn AS top FROM kam UNION ALL SELECT k, a, 1, m1_cn FROM kam", "e_all", False)}""")
q(f"""CREATE TEMP TABLE g_on AS {gather(
    f"SELECT k, a AS id, 0 AS o, m0_cn - m0_cln AS top, (a - 1) * {DAY} AS min_ts FROM kam "
    f"UNION ALL SELECT le.k, le.row_id, -1, le.cn - le.cln, l.a * {DAY} FROM le JOIN l USING (row_id)", "e_on", True)}""")


def agg(name, w, end, start, late_from, late_to):
    """SUM, COUNT, AVERAGE over window w from running values (each argument a prefix of the running
    columns' names): events in [start, end) minus the late events in [late_from, late_to)."""
    s = f"({end}cs - {start}cs - ({late_to}cls - {late_from}cls))"
    n = f"({end}cn - {start}cn - ({late_to}cln - {late_from}cln))"
    return [f"CASE WHEN {n} > 0 THEN CAST({s} AS BIGINT) END AS {name}_sum_{w}d",
            f"CASE WHEN {n} > 0 THEN {n} END AS {name}_count_{w}d",
            f"CASE WHEN {n} > 0 THEN CAST({s} AS DOUBLE) / {n} END AS {name}_average_{w}d"]


def last_k(name, on_list, all_list):
    merged = f"list_concat(coalesce({on_list}, []), coalesce({all_list}, []))[1:{K}]"
    return f"CASE WHEN len({merged}) > 0 THEN {merged} END AS {name}_last{K}"


sp, tp = "bench_snapshot_v1_value", "bench_temporal_v1_value"
snap = []
for w in (3, 14, 30):
    snap += agg(sp, w, "m.m0_", f"m.m{w}_", "m.m1_", "m.m0_")
snap.append(last_k(sp, "o0.l", "a1.l"))
temporal = []
for w in (3, 14, 30):
    temporal += agg(tp, w, "e.", "h." if w == 3 else f"m.m{w}_", "m.m0_", "e.")
temporal.append(last_k(tp, "lo.l", "a0.l"))
q(f"""COPY (
SELECT l.row_id, {", ".join(snap)}, {", ".join(temporal)}
FROM l
JOIN kam m ON m.k = l.k AND m.a = l.a
JOIN le e ON e.row_id = l.row_id
JOIN lh h ON h.row_id = l.row_id
LEFT JOIN g_all a0 ON a0.k = l.k AND a0.id = l.a AND a0.o = 0
LEFT JOIN g_all a1 ON a1.k = l.k AND a1.id = l.a AND a1.o = 1
LEFT JOIN g_on o0 ON o0.k = l.k AND o0.id = l.a AND o0.o = 0
LEFT JOIN g_on lo ON lo.k = l.k AND lo.id = l.row_id AND lo.o = -1
) TO '{out}' (FORMAT parquet)""")
rows = q(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
report(time.perf_counter() - t0, rows)
