"""Dump an Avro container file: header metadata, schema, records (fastavro)."""
import sys, json, fastavro
def default(o):
    if isinstance(o, bytes): return "0x" + o.hex()
    return str(o)
path = sys.argv[1]
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 3
with open(path, "rb") as f:
    r = fastavro.reader(f)
    meta = r.metadata
    print("== header metadata keys:", sorted(meta))
    print("avro.codec:", meta.get("avro.codec"))
    for k, v in sorted(meta.items()):
        if k in ("avro.schema", "schema", "partition-spec"):
            continue
        print(f"  {k} = {v}")
    if "--schema" in sys.argv:
        print("avro.schema:", json.dumps(json.loads(meta["avro.schema"]), indent=1))
    if "--iceberg-schema" in sys.argv:
        print("schema:", meta.get("schema")); print("partition-spec:", meta.get("partition-spec"))
    recs = list(r)
    print(f"== {len(recs)} records")
    for rec in recs[:limit]:
        print(json.dumps(rec, default=default, indent=1))
