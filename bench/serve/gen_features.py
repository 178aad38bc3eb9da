#!/usr/bin/env python3
"""Write a small test parquet: gen_features.py <out.parquet> [users=1000] [float_features=12].

Columns: user_id (int64), event_timestamp (UTC, within the last day), f0..f{n-1} (float64, ~5% null),
segment (string, ~5% null). Deterministic (seeded).
"""
import sys
from datetime import datetime, timedelta, timezone
import random
import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
users = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
nfloat = int(sys.argv[3]) if len(sys.argv) > 3 else 12
rng = random.Random(42)
now = datetime.now(timezone.utc).replace(microsecond=0)
cols = {"user_id": pa.array(range(1, users + 1), pa.int64()),
        "event_timestamp": pa.array([now - timedelta(seconds=rng.randrange(86400)) for _ in range(users)],
                                    pa.timestamp("us", tz="UTC"))}
for j in range(nfloat):
    cols[f"f{j}"] = pa.array([None if rng.random() < 0.05 else rng.random() * 100 for _ in range(users)], pa.float64())
cols["segment"] = pa.array([None if rng.random() < 0.05 else rng.choice(["a", "bb", "ccc", "dddd"]) for _ in range(users)], pa.string())
pq.write_table(pa.table(cols), out)
print(f"wrote {out}: {users} rows, {len(cols) - 2} features")
