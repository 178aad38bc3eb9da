#!/usr/bin/env python3
"""Feast's push path: the same `returns` events written into a Feast online store.

usage: feast_push.py <events.jsonl> <repo_dir> <sqlite|redis> [redis_conn]
env:   FEAST_BATCH (rows per push, default 1000), FEAST_SINGLE (events pushed one per call, default 2000)

Writes a Feast repo (Entity `user` on the string key user_id, a PushSource `returns_push` backed by
an empty parquet FileSource, FeatureView `returns` with return_id, product_id and refund_amt),
`feast apply`s it, then times `FeatureStore.push(..., to=PushMode.ONLINE)` (which calls
`write_to_online_store`) over every event in batches of FEAST_BATCH, then FEAST_SINGLE events one
push each (what a per-record consumer would do). Checks that every key's stored refund_amt is its
newest event's. Prints one JSON line per mode.

Feast keeps one row per key (the newest event's values): it stores, it does not aggregate windows.
Run with the .bench/stream venv's python (bench/stream/setup.sh).
"""
import json
import os
import statistics
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def write_repo(repo, store, redis_conn):
    data = os.path.join(repo, "data")
    os.makedirs(data, exist_ok=True)
    # The push source needs a batch source; nothing is materialized from it.
    empty = pa.table({"user_id": pa.array([], pa.string()), "return_id": pa.array([], pa.string()),
                      "product_id": pa.array([], pa.string()), "refund_amt": pa.array([], pa.int64()),
                      "event_timestamp": pa.array([], pa.timestamp("us", tz="UTC"))})
    pq.write_table(empty, os.path.join(data, "returns_batch.parquet"))
    online = (f"  type: sqlite\n  path: {data}/online.db\n" if store == "sqlite"
              else f"  type: redis\n  connection_string: \"{redis_conn}\"\n")
    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(f"project: stream_{store}\nprovider: local\nregistry: {data}/registry.db\n"
                f"offline_store:\n  type: file\nonline_store:\n{online}entity_key_serialization_version: 3\n")
    with open(os.path.join(repo, "features.py"), "w") as f:
        f.write(f'''from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, PushSource
from feast.types import Int64, String
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
batch = FileSource(name="returns_batch", path="{data}/returns_batch.parquet", timestamp_field="event_timestamp")
push = PushSource(name="returns_push", batch_source=batch)
returns = FeatureView(
    name="returns",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[Field(name="user_id", dtype=String), Field(name="return_id", dtype=String),
            Field(name="product_id", dtype=String), Field(name="refund_amt", dtype=Int64)],
    online=True,
    source=push,
)
''')
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True, stdout=subprocess.DEVNULL)


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[3] not in ("sqlite", "redis"):
        sys.exit(__doc__)
    events_path, repo, store = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    redis_conn = sys.argv[4] if len(sys.argv) == 5 else "127.0.0.1:6379,db=9"
    batch = int(os.environ.get("FEAST_BATCH", "1000"))
    single = int(os.environ.get("FEAST_SINGLE", "2000"))
    write_repo(repo, store, redis_conn)

    from feast import FeatureStore
    from feast.data_source import PushMode

    events = [json.loads(line) for line in open(events_path)]
    df = pd.DataFrame(events)
    df["event_timestamp"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df = df.drop(columns=["ts"])
    fs = FeatureStore(repo_path=repo)
    fs.push("returns_push", df.iloc[:1], to=PushMode.ONLINE)  # warm the registry cache

    lat = []
    t0 = time.perf_counter()
    for i in range(0, len(df), batch):
        s = time.perf_counter()
        fs.push("returns_push", df.iloc[i:i + batch], to=PushMode.ONLINE)
        lat.append(time.perf_counter() - s)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"bench": "feast-push", "store": store, "batch": batch, "events": len(df),
                      "seconds": round(elapsed, 3), "events_per_s": round(len(df) / elapsed),
                      "push_ms_p50": round(pct(lat, 0.5) * 1000, 2),
                      "push_ms_p99": round(pct(lat, 0.99) * 1000, 2)}), flush=True)

    # Every key holds its newest event (Feast compares event timestamps on write).
    newest = df.sort_values("event_timestamp", kind="stable").groupby("user_id").tail(1).set_index("user_id")
    keys = list(newest.index)
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        got = fs.get_online_features(features=["returns:refund_amt"],
                                     entity_rows=[{"user_id": k} for k in chunk]).to_dict()
        for k, v in zip(got["user_id"], got["refund_amt"]):
            if v != int(newest.at[k, "refund_amt"]):
                sys.exit(f"feast {store}: user {k} holds refund_amt {v}, its newest event says "
                         f"{newest.at[k, 'refund_amt']}")

    # One event per push, as a per-record consumer would write them (timestamps moved past the
    # batch's so every write lands).
    rows = df.iloc[:single].copy()
    rows["event_timestamp"] = rows["event_timestamp"] + pd.Timedelta(days=1)
    lat = []
    t0 = time.perf_counter()
    for i in range(len(rows)):
        s = time.perf_counter()
        fs.push("returns_push", rows.iloc[i:i + 1], to=PushMode.ONLINE)
        lat.append(time.perf_counter() - s)
    elapsed = time.perf_counter() - t0
    if rows.empty:
        return
    print(json.dumps({"bench": "feast-push", "store": store, "batch": 1, "events": len(rows),
                      "seconds": round(elapsed, 3), "events_per_s": round(len(rows) / elapsed),
                      "push_ms_p50": round(statistics.median(lat) * 1000, 3),
                      "push_ms_p99": round(pct(lat, 0.99) * 1000, 3)}), flush=True)


if __name__ == "__main__":
    main()
