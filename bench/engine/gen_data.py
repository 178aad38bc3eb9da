"""Writes the engine benchmark's input: events and left rows as Parquet files with a `ds` column, and
the compiled Chronon configs (Airbnb dialect) that read them.

    python gen_data.py OUT_DIR [--events N] [--left N] [--keys N]
                       [--ts-step MS] [--late F] [--nulls F] [--value-max N]

The last four make adversarial data for checking the peers' exactness: --ts-step rounds every ts
(events and left rows) down to a multiple of MS, so events tie with each other, with left rows and
with window bounds; a small --value-max makes ties in (ts, value).

Deterministic (seeded). Events span 60 days; 5% land in the partition after their ts's day (late
data, which SPEC §4.2 rule 1 keeps out until it lands); 1% of values are null. Left rows span the last
7 days, each with a unique row_id.
"""

import argparse
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY = 86_400_000
FIRST_DAY = 19723  # 2024-01-01, in days since the epoch


def ds_strings(days):
    """`yyyy-MM-dd` of each day, as an Arrow string array built from the distinct days (a numpy string
    array of 100M dates would take 4 GB)."""
    uniq, idx = np.unique(days, return_inverse=True)
    names = (np.datetime64("1970-01-01") + uniq.astype("timedelta64[D]")).astype(str)
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(names)).cast(pa.string())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--left", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--ts-step", type=int, default=1)
    ap.add_argument("--late", type=float, default=0.05)
    ap.add_argument("--nulls", type=float, default=0.01)
    ap.add_argument("--value-max", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(20261121)
    os.makedirs(args.out, exist_ok=True)

    n = args.events
    day = FIRST_DAY + rng.integers(0, 60, n)
    step = args.ts_step
    ts = day.astype(np.int64) * DAY + rng.integers(0, DAY, n) // step * step
    late = rng.random(n) < args.late
    part = day + late.astype(np.int64)
    value = rng.integers(1, args.value_max, n)
    value_mask = rng.random(n) < args.nulls
    events = pa.table(
        {
            "user_id": pa.array(rng.integers(0, args.keys, n)),
            "ts": pa.array(ts),
            "value": pa.array(value, mask=value_mask),
            "ds": ds_strings(part),
        }
    )
    pq.write_table(events, os.path.join(args.out, "events.parquet"))

    m = args.left
    lday = FIRST_DAY + 53 + rng.integers(0, 7, m)
    left = pa.table(
        {
            "row_id": pa.array(np.arange(m, dtype=np.int64)),
            "user_id": pa.array(rng.integers(0, args.keys, m)),
            "ts": pa.array(lday.astype(np.int64) * DAY + rng.integers(0, DAY, m) // step * step),
            "ds": ds_strings(lday),
        }
    )
    pq.write_table(left, os.path.join(args.out, "left.parquet"))

    repo = os.path.join(args.out, "repo")
    windows = [{"length": w, "timeUnit": 1} for w in (3, 14, 30)]
    aggs = [
        {"inputColumn": "value", "operation": 7, "argMap": {}, "windows": windows},
        {"inputColumn": "value", "operation": 6, "argMap": {}, "windows": windows},
        {"inputColumn": "value", "operation": 8, "argMap": {}, "windows": windows},
        {"inputColumn": "value", "operation": 13, "argMap": {"k": "10"}},
    ]

    def group_by(name, topic):
        events_source = {"table": "data.events", "query": {"selects": {"user_id": "user_id", "value": "value"}, "timeColumn": "ts"}}
        if topic:
            events_source["topic"] = "events"
        return {
            "metaData": {"name": name, "team": "bench", "outputNamespace": "default", "online": 1},
            "sources": [{"events": events_source}],
            "keyColumns": ["user_id"],
            "aggregations": aggs,
        }

    join = {
        "metaData": {"name": "bench.training.v1", "team": "bench", "outputNamespace": "default"},
        "left": {"events": {"table": "data.left", "query": {"selects": {"row_id": "row_id", "user_id": "user_id", "ts": "ts"}, "timeColumn": "ts"}}},
        "joinParts": [{"groupBy": group_by("bench.snapshot.v1", False)}, {"groupBy": group_by("bench.temporal.v1", True)}],
    }
    os.makedirs(os.path.join(repo, "production/joins/bench"), exist_ok=True)
    with open(os.path.join(repo, "production/joins/bench/training.v1"), "w") as f:
        json.dump(join, f, indent=2)
    with open(os.path.join(repo, "teams.json"), "w") as f:
        json.dump({"default": {"namespace": "default"}, "bench": {"namespace": "default"}}, f)
    print(f"wrote {n} events and {m} left rows to {args.out}")


if __name__ == "__main__":
    main()
