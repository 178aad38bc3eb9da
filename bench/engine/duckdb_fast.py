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
C(t) and the lists at t are looked up by ASOF joins (last event with ts < t) into per-key running
sums and rolling lists of the 10 newest, kept at the last event of each (key, ts). Lookups at
midnights are made once per (key, left day), not per left row.

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
con.execute("SET preserve_insertion_order = false")
q = con.execute

q(f"""CREATE TEMP TABLE ev AS
SELECT user_id AS k, ts, value AS v,
       CAST(date_diff('day', DATE '1970-01-01', CAST(ds AS DATE)) AS BIGINT) - (ts // {DAY}) AS late
FROM read_parquet('{data}/events.parquet') WHERE value IS NOT NULL AND ts IS NOT NULL AND user_id IS NOT NULL""")
lo, hi = q("SELECT min(late), max(late) FROM ev").fetchone()
if lo is not None and (lo < 0 or hi > 1):
    sys.exit(f"duckdb_fast relies on p - day(ts) in {{0, 1}}; the data has {lo}..{hi}")

# Running sums over all events and rolling lists of the K newest, kept at the last row of each (k, ts)
# so that an ASOF match is unambiguous. Lists are built oldest first, reversed at the end.
q(f"""CREATE TEMP TABLE c_all AS
SELECT k, ts, cs, cn, cls, cln, l FROM (
  SELECT k, ts,
    sum(v) OVER (w ROWS UNBOUNDED PRECEDING) AS cs, count(*) OVER (w ROWS UNBOUNDED PRECEDING) AS cn,
    sum(v * late) OVER (w ROWS UNBOUNDED PRECEDING) AS cls, sum(late) OVER (w ROWS UNBOUNDED PRECEDING) AS cln,
    list(v) OVER (w ROWS BETWEEN {K - 1} PRECEDING AND CURRENT ROW) AS l,
    lead(ts) OVER w AS next_ts
  FROM ev
  WINDOW w AS (PARTITION BY k ORDER BY ts, v)
) WHERE next_ts IS DISTINCT FROM ts""")
q(f"""CREATE TEMP TABLE c_on AS
SELECT k, ts, l FROM (
  SELECT k, ts,
    list({{'ts': ts, 'v': v}}) OVER (PARTITION BY k ORDER BY ts, v ROWS BETWEEN {K - 1} PRECEDING AND CURRENT ROW) AS l,
    lead(ts) OVER (PARTITION BY k ORDER BY ts, v) AS next_ts
  FROM ev WHERE late = 0
) WHERE next_ts IS DISTINCT FROM ts""")

q(f"""CREATE TEMP TABLE l AS
SELECT row_id, user_id AS k, ts AS t, ts // {DAY} AS a FROM read_parquet('{data}/left.parquet')""")
q("CREATE TEMP TABLE ka AS SELECT DISTINCT k, a FROM l")
# Every point a running value is needed at: per left row its ts and the 3d window's hour-rounded
# start; per (key, left day) the midnights of a, a-1, a-3, a-14, a-30.
q(f"""CREATE TEMP TABLE pts AS
SELECT DISTINCT k, t FROM (
  SELECT k, t FROM l
  UNION ALL SELECT k, (t - {3 * DAY}) // {HOUR} * {HOUR} FROM l
  UNION ALL SELECT k, (a - o) * {DAY} FROM ka, (VALUES (0), (1), (3), (14), (30)) AS d(o))""")
q("""CREATE TEMP TABLE at_all AS
SELECT p.k, p.t, coalesce(c.cs, 0) AS cs, coalesce(c.cn, 0) AS cn, coalesce(c.cls, 0) AS cls,
       coalesce(c.cln, 0) AS cln, list_reverse(coalesce(c.l, [])) AS l
FROM pts p ASOF LEFT JOIN c_all c ON p.k = c.k AND p.t > c.ts""")
q(f"""CREATE TEMP TABLE at_on AS
SELECT p.k, p.t, list_reverse(coalesce(c.l, [])) AS l
FROM (SELECT DISTINCT k, t FROM (SELECT k, t FROM l UNION ALL SELECT k, a * {DAY} FROM ka)) p
ASOF LEFT JOIN c_on c ON p.k = c.k AND p.t > c.ts""")


def agg(name, w, end, start, late_from, late_to):
    """SUM, COUNT, AVERAGE over window w from running values (each argument a function of the running
    column's name): events in [start, end) minus the late events in [late_from, late_to)."""
    s = f"({end('cs')} - {start('cs')} - ({late_to('cls')} - {late_from('cls')}))"
    n = f"({end('cn')} - {start('cn')} - ({late_to('cln')} - {late_from('cln')}))"
    return [f"CASE WHEN {n} > 0 THEN CAST({s} AS BIGINT) END AS {name}_sum_{w}d",
            f"CASE WHEN {n} > 0 THEN {n} END AS {name}_count_{w}d",
            f"CASE WHEN {n} > 0 THEN CAST({s} AS DOUBLE) / {n} END AS {name}_average_{w}d"]


def last_k(name, on_list, day_start, all_list):
    merged = f"list_concat([x.v FOR x IN {on_list} IF x.ts >= {day_start}], {all_list})[1:{K}]"
    return f"CASE WHEN len({merged}) > 0 THEN {merged} END AS {name}_last{K}"


def ref(table):
    return lambda c: f"{table}.{c}"


# Per (key, left day): the SNAPSHOT part, and the midnight values the TEMPORAL part needs.
sp, tp = "bench_snapshot_v1_value", "bench_temporal_v1_value"
snap = []
for w in (3, 14, 30):
    snap += agg(sp, w, ref("m0"), ref(f"m{w}"), ref("m1"), ref("m0"))
snap.append(last_k(sp, "o0.l", f"(ka.a - 1) * {DAY}", "m1.l"))
joins = " ".join(f"JOIN at_all m{o} ON m{o}.k = ka.k AND m{o}.t = (ka.a - {o}) * {DAY}" for o in (0, 1, 3, 14, 30))
q(f"""CREATE TEMP TABLE kaf AS
SELECT ka.k, ka.a, {", ".join(snap)},
  m0.cls AS m0_cls, m0.cln AS m0_cln, m0.l AS m0_l,
  m14.cs AS m14_cs, m14.cn AS m14_cn, m30.cs AS m30_cs, m30.cn AS m30_cn
FROM ka {joins} JOIN at_on o0 ON o0.k = ka.k AND o0.t = ka.a * {DAY}""")

# Per left row: the TEMPORAL part from its own lookups (at ts and the 3d window's start) and kaf's.
temporal = []
for w in (3, 14, 30):
    start = ref("h3") if w == 3 else (lambda c, w=w: f"f.m{w}_{c}")
    temporal += agg(tp, w, ref("e"), start, lambda c: f"f.m0_{c}", ref("e"))
temporal.append(last_k(tp, "o.l", f"l.a * {DAY}", "f.m0_l"))
snap_cols = [c.rsplit(" AS ", 1)[1] for c in snap]
q(f"""COPY (
SELECT l.row_id, {", ".join("f." + c for c in snap_cols)}, {", ".join(temporal)}
FROM l
LEFT JOIN kaf f ON f.k = l.k AND f.a = l.a
LEFT JOIN at_all e ON e.k = l.k AND e.t = l.t
LEFT JOIN at_all h3 ON h3.k = l.k AND h3.t = (l.t - {3 * DAY}) // {HOUR} * {HOUR}
LEFT JOIN at_on o ON o.k = l.k AND o.t = l.t
) TO '{out}' (FORMAT parquet)""")
rows = q(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
report(time.perf_counter() - t0, rows)
