"""Compares two chronoflow outputs (Parquet globs) to the bit: rows matched by row_id, every column,
floats compared by their bits (nulls by position), lists element by element. Exit 1 on any difference."""
import sys, glob
import numpy as np
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc

def load(pattern):
    files = sorted(glob.glob(pattern))
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return t.take(pc.sort_indices(t, [("row_id", "ascending")]))

def bits(arr):
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    t = arr.type
    if pa.types.is_list(t):
        lens = np.asarray(arr.value_lengths().fill_null(-1))
        return [("len", lens)] + [("item" + k, v) for k, v in bits(arr.flatten())]
    nulls = np.asarray(arr.is_null())
    if pa.types.is_floating(t):
        vals = np.asarray(arr.fill_null(0.0)).view(np.int64)
    elif pa.types.is_integer(t):
        vals = np.asarray(arr.fill_null(0))
    else:
        vals = np.asarray(arr.cast(pa.string()).fill_null("\0"), dtype=object)
    return [("null", nulls), ("val", vals)]

a, b = load(sys.argv[1]), load(sys.argv[2])
bad = []
if a.num_rows != b.num_rows: bad.append(f"rows {a.num_rows} vs {b.num_rows}")
names = [n for n in a.column_names]
if set(names) != set(b.column_names): bad.append(f"columns differ: {set(names) ^ set(b.column_names)}")
for n in names:
    if n not in b.column_names or a.num_rows != b.num_rows: continue
    if a.schema.field(n).type != b.schema.field(n).type:
        bad.append(f"{n}: type {a.schema.field(n).type} vs {b.schema.field(n).type}"); continue
    for (ka, va), (kb, vb) in zip(bits(a.column(n)), bits(b.column(n))):
        if len(va) != len(vb) or not np.array_equal(va, vb):
            bad.append(f"{n}.{ka}: {int(np.sum(va != vb)) if len(va) == len(vb) else 'length'} differ")
print(f"bitcmp {a.num_rows} rows x {len(names)} columns:", "IDENTICAL" if not bad else "DIFFERENT " + "; ".join(bad))
sys.exit(1 if bad else 0)
