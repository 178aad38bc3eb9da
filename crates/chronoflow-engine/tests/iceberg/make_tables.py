"""Iceberg tables written by pyiceberg 0.12 for tests/iceberg_tables.rs, and what pyiceberg's own
scan reads from them, one Parquet file per partition (the partition's identity source column
dropped, as chronoflow shows it).

usage: make_tables.py <root> <catalog-uri> <catalog-name>
  root/warehouse: the tables; root/expected/<namespace.table>/<yyyy-MM-dd>.parquet and
  partitions.json: pyiceberg's rows; <catalog-uri>: sqlite:///… or postgresql+psycopg2://…"""
import datetime, json, os, sys, time, uuid
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import (ManifestWriterV2, ManifestContent, DataFile, DataFileContent,
    FileFormat, ManifestEntry, ManifestEntryStatus, write_manifest_list)
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.schema import Schema
from pyiceberg.table.snapshots import Snapshot, Summary, Operation
from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate, AssertRefSnapshotId
from pyiceberg.transforms import IdentityTransform, DayTransform, MonthTransform
from pyiceberg.typedef import Record
from pyiceberg.types import NestedField, StringType, LongType, DateType, TimestampType, DoubleType

root, uri, name = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(f"{root}/warehouse", exist_ok=True)
cat = SqlCatalog(name, uri=uri, warehouse=f"file://{root}/warehouse")
cat.create_namespace("data")
cat.create_namespace(("lake", "sub"))


def day_rows(schema, ds, n, start):
    return pa.Table.from_pydict({
        "ts": [1_700_000_000_000 + i for i in range(start, start + n)],
        "user_id": [i % 7 for i in range(start, start + n)],
        "price": [i * 1.5 for i in range(start, start + n)],
        "ds": [ds] * n,
    }, schema=schema)


# 1. identity(ds) on a string; history: append, append to a day, delete a day, add a column and
#    rename one (field ids keep old files readable), append.
purchases = Schema(
    NestedField(1, "ts", LongType(), required=False),
    NestedField(2, "user_id", LongType(), required=False),
    NestedField(3, "price", DoubleType(), required=False),
    NestedField(4, "ds", StringType(), required=True),
)
by_ds = PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=IdentityTransform(), name="ds"))
p = cat.create_table("data.purchases", schema=purchases, partition_spec=by_ds)
arrow = p.schema().as_arrow()
p.append(pa.concat_tables([day_rows(arrow, "2023-11-01", 10, 0), day_rows(arrow, "2023-11-02", 10, 100),
                           day_rows(arrow, "2023-11-03", 10, 200)]))
p.append(day_rows(arrow, "2023-11-02", 5, 300))
p.delete("ds == '2023-11-03'")
with p.update_schema() as u:
    u.add_column("coupon", StringType())
    u.rename_column("price", "amount")
p = cat.load_table("data.purchases")
rows = day_rows(arrow, "2023-11-04", 6, 400).rename_columns(["ts", "user_id", "amount", "ds"])
rows = rows.append_column("coupon", pa.array(["X"] * 6, pa.string()))
p.append(rows.select(["ts", "user_id", "amount", "ds", "coupon"]).cast(p.schema().as_arrow()))
# The manifest of that last append holds only 2023-11-04: reading another day must not open it.
p = cat.load_table("data.purchases")
last = [m.manifest_path for m in p.current_snapshot().manifests(p.io)
        if m.added_snapshot_id == p.current_snapshot().snapshot_id]
os.makedirs(f"{root}/expected")
with open(f"{root}/expected/last_manifest.json", "w") as f:
    json.dump(last, f)

# 2. identity on a date column, day() on a timestamp (a null partition value; a day before 1970).
dated = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "day", DateType(), required=False),
    NestedField(3, "ts", TimestampType(), required=False),
    NestedField(4, "name", StringType(), required=False),
)
rows = pa.table({
    "id": pa.array([1, 2, 3, 4], pa.int64()),
    "day": pa.array([datetime.date(2023, 11, 14), datetime.date(2023, 11, 15), None, datetime.date(2023, 11, 15)], pa.date32()),
    "ts": pa.array([datetime.datetime(2023, 11, 14, 23, 59, 59), datetime.datetime(2023, 11, 15, 0, 0, 1),
                    datetime.datetime(1969, 12, 31, 12, 0), datetime.datetime(2023, 11, 15, 8, 0)], pa.timestamp("us")),
    "name": pa.array(["a", "b", None, "d"], pa.string()),
})
cat.create_table("lake.sub.by_date", schema=dated, partition_spec=PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="day"))).append(rows)
cat.create_table("lake.sub.by_ts", schema=dated, partition_spec=PartitionSpec(
    PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="ts_day"))).append(rows)
# Partitioned by month: not a daily table.
cat.create_table("lake.sub.by_month", schema=dated, partition_spec=PartitionSpec(
    PartitionField(source_id=3, field_id=1000, transform=MonthTransform(), name="ts_month"))).append(rows)

# 3. format version 1.
v1 = cat.create_table("data.v1_table", schema=purchases, partition_spec=by_ds, properties={"format-version": "1"})
v1.append(day_rows(v1.schema().as_arrow(), "2023-11-01", 3, 0))

# A format version 3 table (pyiceberg 0.12 cannot write one): v1_table's metadata claiming v3.
md = json.load(open(v1.metadata_location.removeprefix("file://")))
md["format-version"] = 3
v3 = v1.metadata_location.replace(".metadata.json", "-v3.metadata.json")
with open(v3.removeprefix("file://"), "w") as f:
    json.dump(md, f)
cat.register_table(("data", "v3_table"), v3)

# 4. a merge-on-read position delete on 2023-11-02 (pyiceberg reads such deletes but never writes
#    them: the delete file and its manifest are built with pyiceberg's writers and committed).
class DeleteManifestWriter(ManifestWriterV2):
    def content(self):
        return ManifestContent.DELETES

    @property
    def _meta(self):
        return {**super()._meta, "content": "deletes"}


r = cat.create_table("data.returns_pos", schema=purchases, partition_spec=by_ds)
r.append(pa.concat_tables([day_rows(r.schema().as_arrow(), "2023-11-01", 4, 0),
                           day_rows(r.schema().as_arrow(), "2023-11-02", 4, 10)]))
r = cat.load_table("data.returns_pos")
md, snap = r.metadata, r.current_snapshot()
target = [e for m in snap.manifests(r.io) for e in m.fetch_manifest_entry(r.io)
          if e.data_file.partition[0] == "2023-11-02"][0].data_file.file_path
fid = lambda n, t, i: pa.field(n, t, nullable=False, metadata={b"PARQUET:field_id": str(i).encode()})
deletes = pa.table([pa.array([target]), pa.array([1], pa.int64())],
                   schema=pa.schema([fid("file_path", pa.string(), 2147483546), fid("pos", pa.int64(), 2147483545)]))
path = f"{md.location}/data/ds=2023-11-02/deletes-{uuid.uuid4()}.parquet"
pq.write_table(deletes, path.removeprefix("file://"))
df = DataFile.from_args(content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
    partition=Record("2023-11-02"), record_count=1, file_size_in_bytes=os.path.getsize(path.removeprefix("file://")),
    _table_format_version=2)
snapshot_id = int(time.time() * 1000) * 1000 + 7
seq = md.last_sequence_number + 1
with DeleteManifestWriter(md.spec(), md.schema(), r.io.new_output(f"{md.location}/metadata/{uuid.uuid4()}-m0.avro"),
                          snapshot_id, "deflate") as w:
    w.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id, data_file=df))
lpath = f"{md.location}/metadata/snap-{snapshot_id}-0-{uuid.uuid4()}.avro"
with write_manifest_list(2, r.io.new_output(lpath), snapshot_id, snap.snapshot_id, seq, "deflate") as lw:
    lw.add_manifests(list(snap.manifests(r.io)) + [w.to_manifest_file()])
new = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=snap.snapshot_id, sequence_number=seq,
    timestamp_ms=int(time.time() * 1000), manifest_list=lpath,
    summary=Summary(Operation.DELETE, **{"added-delete-files": "1"}), schema_id=md.current_schema_id)
with r.transaction() as tx:
    tx._apply((AddSnapshotUpdate(snapshot=new), SetSnapshotRefUpdate(snapshot_id=snapshot_id,
               parent_snapshot_id=snap.snapshot_id, ref_name="main", type="branch")),
              (AssertRefSnapshotId(snapshot_id=snap.snapshot_id, ref="main"),))


# What pyiceberg's scan reads, per partition.
def dump(ident, key, drop):
    table = cat.load_table(ident).scan().to_arrow()
    keys = key(table)
    out = f"{root}/expected/{ident}"
    os.makedirs(out)
    parts = sorted({k for k in keys.to_pylist() if k is not None})
    for k in parts:
        part = table.filter(pc.equal(keys, k))
        pq.write_table(part.drop_columns([drop]) if drop else part, f"{out}/{k}.parquet")
    with open(f"{out}/partitions.json", "w") as f:
        json.dump(parts, f)


as_text = lambda col: (lambda t: pc.cast(t[col], pa.string()))
dump("data.purchases", as_text("ds"), "ds")
dump("data.v1_table", as_text("ds"), "ds")
dump("data.returns_pos", as_text("ds"), "ds")
dump("lake.sub.by_date", as_text("day"), "day")
dump("lake.sub.by_ts", lambda t: pc.cast(pc.cast(t["ts"], pa.date32()), pa.string()), None)
print("done")
