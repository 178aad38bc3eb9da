"""Compares two engine-benchmark results value by value: every left row (by row_id) and each of the
20 features (averages to 1e-9 relative, everything else exactly, lists element by element, null
equal to null only). Either side may be a peer's Parquet file or a glob (chronoflow's output
partitions, read with hive partitioning); columns are matched by name.

    python compare.py REF OTHER [--skip FEATURE,...] [--json]

Prints the rows on each side, rows missing on either side and the mismatch count per feature;
--skip leaves out features a peer documents it cannot express. Exit status 1 on any difference.
"""

import argparse
import json
import sys

import duckdb

from common import feature_names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("other")
    ap.add_argument("--skip", default="", help="comma-separated features left out of the comparison")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    feats = [f for f in feature_names() if f not in skip]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    for name, path in (("r", args.ref), ("o", args.other)):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}', hive_partitioning = true)")
        cols = {c[0] for c in con.execute(f"DESCRIBE {name}").fetchall()}
        missing = [f for f in ["row_id"] + feats if f not in cols]
        if missing:
            sys.exit(f"{path}: no column {', '.join(missing)}")
    checks = []
    for f in feats:
        if "average" in f:
            same = f"((r.{f} IS NULL AND o.{f} IS NULL) OR abs(r.{f} - o.{f}) <= 1e-9 * abs(r.{f}))"
        else:
            same = f"(r.{f} IS NOT DISTINCT FROM o.{f})"
        checks.append(f"count(*) FILTER (WHERE NOT coalesce({same}, false)) AS \"{f}\"")
    row = con.execute(f"""
        SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM o),
               count(*) FILTER (WHERE o.row_id IS NULL), count(*) FILTER (WHERE r.row_id IS NULL),
               {", ".join(checks)}
        FROM r FULL JOIN o USING (row_id)""").fetchone()
    ref_rows, other_rows, only_ref, only_other = row[:4]
    dup = con.execute("SELECT (SELECT count(*) - count(DISTINCT row_id) FROM r) + (SELECT count(*) - count(DISTINCT row_id) FROM o)").fetchone()[0]
    mism = dict(zip(feats, row[4:]))
    bad = {f: n for f, n in mism.items() if n}
    identical = not bad and not only_ref and not only_other and not dup and ref_rows == other_rows
    print(f"compare {args.other} against {args.ref}: {ref_rows} / {other_rows} rows, "
          f"{only_ref} only in ref, {only_other} only in other, {dup} duplicate row_ids, "
          f"{len(feats)} features compared" + (f" ({len(skip)} skipped: {', '.join(sorted(skip))})" if skip else ""))
    for f in feats:
        print(f"  {f:40s} {mism[f]:>10d} mismatches")
    print("identical" if identical else "DIFFERENT")
    print("RESULT " + json.dumps({"identical": identical, "rows": other_rows, "ref_rows": ref_rows,
                                  "only_ref": only_ref, "only_other": only_other, "mismatches": bad,
                                  "skipped": sorted(skip)}))
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
