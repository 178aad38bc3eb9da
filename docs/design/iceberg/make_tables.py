"""Create Iceberg tables with pyiceberg 0.12 SqlCatalog (SQLite) on a local warehouse dir.
usage: make_tables.py <root> <exported-parquet-dir>"""
import sys, datetime, os
import pyarrow as pa, pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import IdentityTransform, DayTransform
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, LongType, DateType, TimestampType, TimestamptzType, DoubleType, IntegerType

root, exported = sys.argv[1], sys.argv[2]
os.makedirs(f"{root}/warehouse", exist_ok=True)
cat = SqlCatalog("chronoflow", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")
cat.create_namespace("data")

# 1. quickstart tables, v2 (pyiceberg default), identity(ds) on a string column.
for t in ["purchases", "returns", "users", "checkouts"]:
    arrow = pq.read_table(f"{exported}/{t}.parquet")
    tbl = cat.create_table(f"data.{t}", schema=arrow.schema)
    with tbl.update_spec() as u:
        u.add_identity("ds")
    tbl.append(arrow)

# 2. identity on a date column, day() on a timestamp, and a v1 table; namespace with two levels.
cat.create_namespace(("lake", "sub"))
d = [datetime.date(2023, 11, 14), datetime.date(2023, 11, 15), None]
rows = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "day": pa.array(d, pa.date32()),
    "ts": pa.array([datetime.datetime(2023, 11, 14, 23, 59, 59), datetime.datetime(2023, 11, 15, 0, 0, 1), datetime.datetime(1969, 12, 31, 12, 0)], pa.timestamp("us")),
    "name": pa.array(["a", "b", None], pa.string()),
})
schema = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "day", DateType(), required=False),
    NestedField(3, "ts", TimestampType(), required=False),
    NestedField(4, "name", StringType(), required=False),
)
by_date = cat.create_table("lake.sub.by_date", schema=schema,
    partition_spec=PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="day")))
by_date.append(rows)
by_ts = cat.create_table("lake.sub.by_ts", schema=schema,
    partition_spec=PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="ts_day")))
by_ts.append(rows)

v1 = cat.create_table("lake.v1_table", schema=pq.read_table(f"{exported}/users.parquet").schema,
    properties={"format-version": "1"})
with v1.update_spec() as u:
    u.add_identity("ds")
v1.append(pq.read_table(f"{exported}/users.parquet"))

# 3. history: a second append, a delete of one partition (copy-on-write), an added column.
p = cat.load_table("data.purchases")
arrow = pq.read_table(f"{exported}/purchases.parquet")
p.append(arrow.filter(pa.compute.equal(arrow["ds"], "2023-11-14")))
p.delete("ds == '2023-11-15'")
with p.update_schema() as u:
    u.add_column("coupon", StringType())
day16 = arrow.filter(pa.compute.equal(arrow["ds"], "2023-11-16"))
extra = day16.append_column("coupon", pa.array(["X"] * len(day16), pa.string()))
p.append(extra)
print("done")
