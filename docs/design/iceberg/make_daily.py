"""365 daily appends (one manifest each, pyiceberg's fast append) to measure pruning."""
import sys, datetime, time
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
root = sys.argv[1]
cat = SqlCatalog("chronoflow", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")
cat.create_namespace("daily")
schema = pa.schema([pa.field("user_id", pa.int64()), pa.field("v", pa.float64()), pa.field("ds", pa.string(), nullable=False)])
t = cat.create_table("daily.events", schema=schema)
with t.update_spec() as u:
    u.add_identity("ds")
t0 = time.time()
for i in range(365):
    ds = (datetime.date(2023, 1, 1) + datetime.timedelta(days=i)).isoformat()
    t.append(pa.table({"user_id": pa.array(range(100), pa.int64()), "v": pa.array([float(i)] * 100), "ds": pa.array([ds] * 100)}, schema=schema))
print("365 appends in", round(time.time() - t0, 1), "s")
