#!/usr/bin/env python3
"""Write a Feast feature repo over a parquet file, then `feast apply` + `feast materialize` it.

usage: feast_repo.py <features.parquet> <repo_dir> <sqlite|redis> [redis_url]

The parquet has `user_id` (int64), `event_timestamp` (UTC timestamp) and N feature columns
(float64/int64/string/bool, nullable). Result: Entity `user` (join key user_id, Int64), a FileSource
on the parquet, FeatureView `user_features` with every feature column, ttl 3650 days.
Run with the .bench/feast venv's python (bench/serve/feast_setup.sh); `feast` is taken from beside it.
The project name (env FEAST_PROJECT, default bench_<store>) also namespaces the Redis keys.
"""
import os, subprocess, sys
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq

TYPES = {pa.float64(): "Float64", pa.float32(): "Float32", pa.int64(): "Int64",
         pa.int32(): "Int32", pa.string(): "String", pa.large_string(): "String", pa.bool_(): "Bool"}


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[3] not in ("sqlite", "redis"):
        sys.exit(__doc__)
    parquet, repo, store = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    redis_url = sys.argv[4] if len(sys.argv) == 5 else "127.0.0.1:6379"
    project = os.environ.get("FEAST_PROJECT", f"bench_{store}")
    os.makedirs(os.path.join(repo, "data"), exist_ok=True)

    table = pq.read_table(parquet)
    def feast_type(t):
        # Lists (e.g. a LAST_K feature) are Feast arrays of their element type.
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return f"Array({TYPES[t.value_type]})"
        return TYPES[t]
    feats = [(f.name, feast_type(f.type)) for f in table.schema if f.name not in ("user_id", "event_timestamp")]

    online = (f"  type: sqlite\n  path: {repo}/data/online.db\n" if store == "sqlite"
              else f"  type: redis\n  connection_string: \"{redis_url}\"\n")
    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(f"project: {project}\nprovider: local\nregistry: {repo}/data/registry.db\n"
                f"offline_store:\n  type: file\nonline_store:\n{online}")
    schema = ",\n        ".join(f'Field(name="{n}", dtype={t})' for n, t in feats)
    with open(os.path.join(repo, "features.py"), "w") as f:
        f.write(f'''from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(name="user_source", path="{parquet}", timestamp_field="event_timestamp")
user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="user_id", dtype=Int64),
        {schema},
    ],
    online=True,
    source=source,
)
''')

    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True)
    # Explicit range that covers every timestamp in the file (1 s margin each side).
    ts = table.column("event_timestamp")
    lo, hi = pa.compute.min(ts).as_py(), pa.compute.max(ts).as_py()
    fmt = "%Y-%m-%dT%H:%M:%S"
    subprocess.run([feast, "materialize", (lo - timedelta(seconds=1)).strftime(fmt),
                    (hi + timedelta(seconds=1)).strftime(fmt)], cwd=repo, check=True)

    # Count what landed: read every distinct key back through the online store (one row per key).
    from feast import FeatureStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    fs = FeatureStore(repo_path=repo)
    fv = fs.get_feature_view("user_features")
    keys = pa.compute.unique(table.column("user_id")).to_pylist()
    found = 0
    for i in range(0, len(keys), 1000):
        eks = [EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=k)]) for k in keys[i:i + 1000]]
        found += sum(1 for t, _ in fs._get_provider().online_read(fs.config, fv, eks) if t is not None)
    print(f"materialized: {found} rows (one per user_id) from {table.num_rows} parquet rows, "
          f"{len(keys)} distinct user_id, {len(feats)} features, store={store}, project={project}")
    if found != len(keys):
        sys.exit("not every user_id reached the online store")


if __name__ == "__main__":
    main()
