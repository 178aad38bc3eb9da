"""What every engine-benchmark peer shares: the feature names (chronoflow's output columns), the
time constants of SPEC §4, and how a peer reports its result to bench/engine.sh.

Every peer is run as `python PEER.py DATA_DIR OUT.parquet`: it reads DATA_DIR/events.parquet and
DATA_DIR/left.parquet, writes one row per left row (row_id + the 20 features) to OUT.parquet, and prints
`RESULT {"compute_s": ..., "rows": ...}` (compute_s: reading the inputs to the output written; for
Spark this leaves out the JVM start, which the process's wall time includes).
"""

import json
import sys

DAY = 86_400_000
HOUR = 3_600_000
PARTS = ("bench_snapshot_v1", "bench_temporal_v1")
# (window days, tail hop): SPEC §4.1, a window >= 12 days hops by the day, >= 12 hours by the hour.
WINDOWS = ((3, HOUR), (14, DAY), (30, DAY))
OPS = ("sum", "count", "average")
K = 10


def feature_names():
    names = []
    for part in PARTS:
        for w, _ in WINDOWS:
            names += [f"{part}_value_{op}_{w}d" for op in OPS]
        names.append(f"{part}_value_last{K}")
    return names


def args():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} DATA_DIR OUT.parquet")
    return sys.argv[1], sys.argv[2]


def report(compute_s, rows, **extra):
    print(f"{sys.argv[0].rsplit('/', 1)[-1]}: {rows} rows in {compute_s:.2f} s", flush=True)
    print("RESULT " + json.dumps({"compute_s": round(compute_s, 3), "rows": rows, **extra}), flush=True)
