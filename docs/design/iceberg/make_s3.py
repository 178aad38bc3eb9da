"""The quickstart's purchases as an Iceberg table on S3 (moto): SQLite catalog, s3:// warehouse.
usage: make_s3.py <endpoint> <bucket> <sqlite-path> <exported>"""
import sys
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
endpoint, bucket, db, exported = sys.argv[1:5]
cat = SqlCatalog("chronoflow", **{
    "uri": f"sqlite:///{db}",
    "warehouse": f"s3://{bucket}/warehouse",
    "s3.endpoint": endpoint,
    "s3.access-key-id": "test",
    "s3.secret-access-key": "test",
    "s3.region": "us-east-1",
})
cat.create_namespace("data")
for t in ["purchases", "users"]:
    arrow = pq.read_table(f"{exported}/{t}.parquet")
    tbl = cat.create_table(f"data.{t}", schema=arrow.schema)
    with tbl.update_spec() as u:
        u.add_identity("ds")
    tbl.append(arrow)
    print(tbl.metadata_location, tbl.scan(row_filter="ds == '2023-11-29'").to_arrow().num_rows)
