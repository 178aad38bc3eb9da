"""A reference of the planned Rust reader, in Python with only sqlite3/json/fastavro/pyarrow:
catalog row -> metadata JSON -> manifest list -> manifests -> Parquet by field id. Checked
against pyiceberg's own scan. usage: ref_reader.py <catalog.db> <catalog-name>"""
import sys, json, sqlite3, datetime, struct
import fastavro, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc

EPOCH = datetime.date(1970, 1, 1)
DATE_TRANSFORMS = {"identity", "day"}

def local(uri):  # file:///x, file:/x -> /x
    return uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:")

def load(db, catalog, namespace, name):
    row = sqlite3.connect(db).execute(
        "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        (catalog, namespace, name)).fetchone()
    if row is None:
        raise KeyError(f"{namespace}.{name}: not in catalog {catalog}")
    return json.load(open(local(row[0])))

def current_schema(md):
    if "schemas" in md:
        return [s for s in md["schemas"] if s["schema-id"] == md.get("current-schema-id", 0)][0]
    return md["schema"]  # v1 without schemas

def specs(md):
    if "partition-specs" in md:
        return {s["spec-id"]: s["fields"] for s in md["partition-specs"]}
    return {0: md["partition-spec"]}

def date_field(md, schema_fields, column=None):
    """(partition field name, index in spec, transform, source type) of the date partition field, per spec id."""
    by_id = {f["id"]: f for f in schema_fields}
    out = {}
    for sid, fields in specs(md).items():
        for i, pf in enumerate(fields):
            src = by_id.get(pf["source-id"])
            if src is None or pf["transform"] not in DATE_TRANSFORMS:
                continue
            ok = (pf["transform"] == "identity" and src["type"] in ("string", "date")) or \
                 (pf["transform"] == "day" and src["type"] in ("date", "timestamp", "timestamptz"))
            if ok and (column is None or column in (pf["name"], src["name"])):
                out[sid] = (pf["name"], i, pf["transform"], src["type"], src)
    return out

def to_date(value):
    if value is None: return None
    if isinstance(value, datetime.date): return value            # fastavro decodes logicalType date
    if isinstance(value, int): return EPOCH + datetime.timedelta(days=value)
    try: return datetime.date.fromisoformat(value)                # identity(string) 'yyyy-MM-dd'
    except ValueError: return None                                # not a partition date: never listed

def bound_date(raw, source_type, transform):
    if raw is None: return None
    if transform == "identity" and source_type == "string":
        return to_date(raw.decode())
    return to_date(struct.unpack("<i", raw)[0])                  # date / day(): 4-byte LE days

def snapshot(md):
    sid = md.get("current-snapshot-id")
    if sid in (None, -1):
        sid = md.get("refs", {}).get("main", {}).get("snapshot-id")
    if sid in (None, -1):
        return None
    return [s for s in md["snapshots"] if s["snapshot-id"] == sid][0]

def plan(md, ds=None):
    """Live data files (path, date, records) and live delete files, pruned to `ds` if given."""
    if md["format-version"] > 2:
        raise ValueError(f"format-version {md['format-version']}: only 1 and 2 are read")
    schema = current_schema(md)
    fields = date_field(md, schema["fields"])
    snap = snapshot(md)
    data, deletes, read_manifests, skipped = [], [], 0, 0
    if snap is None:
        return data, deletes, 0, 0
    for m in fastavro.reader(open(local(snap["manifest-list"]), "rb")):
        spec_id = m["partition_spec_id"]
        if spec_id not in fields:
            raise ValueError(f"manifest {m['manifest_path']} uses partition spec {spec_id}, which has no date partition field")
        name, i, transform, stype, _ = fields[spec_id]
        summ = (m.get("partitions") or [None] * (i + 1))[i]
        if ds is not None and summ is not None and m.get("content", 0) == 0:
            lo, hi = bound_date(summ["lower_bound"], stype, transform), bound_date(summ["upper_bound"], stype, transform)
            if lo is not None and hi is not None and not (lo <= ds <= hi):
                skipped += 1
                continue
        read_manifests += 1
        reader = fastavro.reader(open(local(m["manifest_path"]), "rb"))
        for e in reader:
            if e["status"] == 2:
                continue
            d = e["data_file"]
            day = to_date(list(d["partition"].values())[i])   # by position: names may be sanitized
            if ds is not None and day != ds:
                continue
            content = d.get("content", 0)
            if m.get("content", 0) == 1 or content != 0:
                deletes.append((d["file_path"], day, content))
            else:
                data.append((d["file_path"], day, d["record_count"], d["file_format"]))
    return data, deletes, read_manifests, skipped

def read_partition(md, ds):
    data, deletes, _, _ = plan(md, ds)
    if deletes:
        kinds = {1: "position", 2: "equality"}
        raise ValueError(f"partition {ds} has {len(deletes)} {'/'.join(sorted({kinds[k] for _, _, k in deletes}))} delete file(s): merge-on-read deletes are not read")
    schema = current_schema(md)
    spec_fields = date_field(md, schema["fields"])
    drop = {src["id"] for (_, _, t, _, src) in spec_fields.values() if t == "identity"}
    want = [f for f in schema["fields"] if f["id"] not in drop]
    mapping = json.loads(md.get("properties", {}).get("schema.name-mapping.default", "[]"))
    name_to_id = {n: m["field-id"] for m in mapping for n in m["names"] if "field-id" in m}
    tables = []
    for path, _, records, fmt in data:
        assert fmt.lower() == "parquet", fmt
        t = pq.read_table(local(path))
        ids = {}
        for j, f in enumerate(t.schema):
            fid = (f.metadata or {}).get(b"PARQUET:field_id")
            ids[int(fid) if fid is not None else name_to_id.get(f.name)] = j
        cols = [t.column(ids[f["id"]]) if f["id"] in ids else pa.nulls(t.num_rows) for f in want]
        tables.append(pa.table(cols, names=[f["name"] for f in want]))
        assert t.num_rows == records
    return pa.concat_tables(tables, promote_options="permissive") if tables else None

if __name__ == "__main__":
    from pyiceberg.catalog.sql import SqlCatalog
    db, catalog = sys.argv[1], sys.argv[2]
    cat = SqlCatalog(catalog, uri=f"sqlite:///{db}")
    for ns, name in sqlite3.connect(db).execute("SELECT table_namespace, table_name FROM iceberg_tables ORDER BY 1, 2"):
        md = load(db, catalog, ns, name)
        data, deletes, nread, _ = plan(md)
        days = sorted({d for _, d, _, _ in data if d is not None})
        tbl = cat.load_table((*ns.split("."), name))
        fields = date_field(md, current_schema(md)["fields"])
        pname, _, transform, stype, src = next(iter(fields.values()))
        ok, bad, refused = 0, [], []
        for day in days:
            try:
                ours = read_partition(md, day)
            except ValueError as e:
                refused.append(str(e)); continue
            if transform == "identity":
                lit = day.isoformat()
                theirs = tbl.scan(row_filter=f"{src['name']} == '{lit}'").to_arrow()
                theirs = theirs.drop_columns([src["name"]])
            else:  # day(ts): rows whose ts falls on that day
                theirs = tbl.scan().to_arrow()
                theirs = theirs.filter(pc.equal(pc.cast(theirs[src["name"]], pa.date32()), pa.scalar(day, pa.date32())))
            key = [(c, "ascending") for c in ours.column_names]
            same = ours.sort_by(key).to_pylist() == theirs.select(ours.column_names).sort_by(key).to_pylist()
            ok += same
            if not same: bad.append(day)
        # pruning: manifests read for one day vs all
        _, _, nread1, skipped1 = plan(md, days[len(days) // 2]) if days else (0, 0, 0, 0)
        print(f"{ns}.{name}: v{md['format-version']} partition {pname}={transform}({src['name']}:{stype}) "
              f"{len(days)} dates, {ok} equal to pyiceberg, differ {bad}, refused {len(refused)} "
              f"{refused[:1]}; manifests {nread} (one day: read {nread1}, pruned {skipped1})")
