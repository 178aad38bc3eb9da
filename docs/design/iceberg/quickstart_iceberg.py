"""The four quickstart tables as Iceberg tables (identity(ds)), in a SQLite catalog.
usage: quickstart_iceberg.py <exported-parquet-dir> <catalog.db> <warehouse-uri> [s3-endpoint]"""
import sys
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
exported, db, warehouse = sys.argv[1:4]
props = {"uri": f"sqlite:///{db}", "warehouse": warehouse}
if len(sys.argv) > 4:
    props.update({"s3.endpoint": sys.argv[4], "s3.access-key-id": "test",
                  "s3.secret-access-key": "test", "s3.region": "us-east-1"})
cat = SqlCatalog("lake", **props)
cat.create_namespace("data")
for t in ["purchases", "returns", "users", "checkouts"]:
    arrow = pq.read_table(f"{exported}/{t}.parquet")
    tbl = cat.create_table(f"data.{t}", schema=arrow.schema)
    with tbl.update_spec() as u:
        u.add_identity("ds")
    tbl.append(arrow)
