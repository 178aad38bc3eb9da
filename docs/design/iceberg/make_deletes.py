"""Add a merge-on-read position delete (and, second table, an equality delete) to v2 tables:
pyiceberg 0.12 reads such deletes but never writes them, so the files are built by hand with its
manifest writers and committed as a new snapshot. usage: make_deletes.py <root> <exported>"""
import sys, uuid, time
import pyarrow as pa, pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import (ManifestWriterV2, ManifestContent, DataFile, DataFileContent, FileFormat,
    ManifestEntry, ManifestEntryStatus, write_manifest_list)
from pyiceberg.table.snapshots import Snapshot, Summary, Operation
from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate, AssertRefSnapshotId
from pyiceberg.typedef import Record

root, exported = sys.argv[1], sys.argv[2]
cat = SqlCatalog("chronoflow", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")

class DeleteManifestWriter(ManifestWriterV2):
    def content(self): return ManifestContent.DELETES
    @property
    def _meta(self): return {**super()._meta, "content": "deletes"}

def fid(name, typ, i, nullable=False):
    return pa.field(name, typ, nullable=nullable, metadata={b"PARQUET:field_id": str(i).encode()})

def commit_delete_file(tbl, arrow, content, equality_ids=None):
    md = tbl.metadata
    snap = tbl.current_snapshot()
    target = [e for m in snap.manifests(tbl.io) for e in m.fetch_manifest_entry(tbl.io) if e.data_file.partition[0] == "2023-11-14"][0]
    ds = "2023-11-14"
    path = f"{md.location}/data/ds={ds}/deletes-{uuid.uuid4()}.parquet"
    pq.write_table(arrow, path.removeprefix("file://"))
    import os
    size = os.path.getsize(path.removeprefix("file://"))
    df = DataFile.from_args(content=content, file_path=path, file_format=FileFormat.PARQUET,
        partition=Record(ds), record_count=arrow.num_rows, file_size_in_bytes=size,
        equality_ids=equality_ids, _table_format_version=2)
    snapshot_id = int(time.time() * 1000) * 1000 + 7
    seq = md.last_sequence_number + 1
    mpath = f"{md.location}/metadata/{uuid.uuid4()}-m0.avro"
    with DeleteManifestWriter(md.spec(), md.schema(), tbl.io.new_output(mpath), snapshot_id, "deflate") as w:
        w.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id, data_file=df))
    delete_manifest = w.to_manifest_file()
    lpath = f"{md.location}/metadata/snap-{snapshot_id}-0-{uuid.uuid4()}.avro"
    with write_manifest_list(2, tbl.io.new_output(lpath), snapshot_id, snap.snapshot_id, seq, "deflate") as lw:
        lw.add_manifests(list(snap.manifests(tbl.io)) + [delete_manifest])
    new = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=snap.snapshot_id, sequence_number=seq,
        timestamp_ms=int(time.time() * 1000), manifest_list=lpath,
        summary=Summary(Operation.DELETE, **{"added-delete-files": "1"}), schema_id=md.current_schema_id)
    with tbl.transaction() as tx:
        tx._apply((AddSnapshotUpdate(snapshot=new), SetSnapshotRefUpdate(snapshot_id=snapshot_id, parent_snapshot_id=snap.snapshot_id, ref_name="main", type="branch")),
                  (AssertRefSnapshotId(snapshot_id=snap.snapshot_id, ref="main"),))
    return target.data_file.file_path

src = pq.read_table(f"{exported}/returns.parquet")
for name in ["returns_pos", "returns_eq"]:
    t = cat.create_table(f"data.{name}", schema=src.schema)
    with t.update_spec() as u:
        u.add_identity("ds")
    t.append(src)

t = cat.load_table("data.returns_pos")
target = [e for m in t.current_snapshot().manifests(t.io) for e in m.fetch_manifest_entry(t.io) if e.data_file.partition[0] == "2023-11-14"][0].data_file.file_path
pos = pa.table([pa.array([target, target]), pa.array([0, 2], pa.int64())],
    schema=pa.schema([fid("file_path", pa.string(), 2147483546), fid("pos", pa.int64(), 2147483545)]))
commit_delete_file(t, pos, DataFileContent.POSITION_DELETES)

t = cat.load_table("data.returns_eq")
first = pq.read_table(target.removeprefix("file://"))
uid = t.schema().find_field("return_id").field_id
eq = pa.table([first["return_id"].slice(0, 1)], schema=pa.schema([fid("return_id", pa.string(), uid, True)]))
commit_delete_file(t, eq, DataFileContent.EQUALITY_DELETES, equality_ids=[uid])

for name in ["returns_pos", "returns_eq"]:
    t = cat.load_table(f"data.{name}")
    n14 = t.scan(row_filter="ds == '2023-11-14'").to_arrow().num_rows
    print(name, "rows of 2023-11-14 read by pyiceberg:", n14, "of", first.num_rows, "in the data file")
