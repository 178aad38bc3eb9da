#!/usr/bin/env python3
"""Write one quickstart event per user for N users: gen_keys.py <dir> <users>.

<dir>/purchases.parquet and <dir>/returns.parquet (ds, ts, id, user_id, product_id,
purchase_price / refund_amt), each user's event on a random day of 2023-11-01..29 at a random
time of that day. Seeded, numpy + pyarrow; written in row groups so memory stays bounded.
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

out, users = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
DAY = 86_400_000
day0 = 19662  # 2023-11-01, days since 1970-01-01
CHUNK = 1_000_000
for table, col in (("purchases", "purchase_price"), ("returns", "refund_amt")):
    writer = None
    for lo in range(0, users, CHUNK):
        n = min(CHUNK, users - lo)
        user = np.arange(lo, lo + n, dtype=np.int64)
        day = day0 + rng.integers(0, 29, n)
        ds = pa.array(day.astype("datetime64[D]").astype(str))
        ts = day * DAY + rng.integers(0, DAY, n)
        ids = pa.array(np.char.add(f"{table[0]}", user.astype(str)))
        batch = pa.table({
            "ds": ds,
            "ts": pa.array(ts, pa.int64()),
            "id": ids,
            "user_id": pa.array(user),
            "product_id": pa.array(rng.integers(1, 100, n)),
            col: pa.array(rng.integers(5, 501, n)),
        })
        if writer is None:
            writer = pq.ParquetWriter(f"{out}/{table}.parquet", batch.schema)
        writer.write_table(batch)
    writer.close()
print(f"{users} users: one purchase and one return each")
