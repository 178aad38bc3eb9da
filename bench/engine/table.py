"""Prints the engine benchmark's scaling table from result lines (bench/engine/results/DATE.jsonl):
sizes x key densities x systems, with wall time, peak memory, microseconds per event, the ratio to
chronoflow's wall time in the same cell and whether the result is identical to chronoflow's (and to
DuckDB's). With repetitions (REPEAT), times are the median and the range.

    python table.py RESULTS.jsonl [--run RUN_ID] [--markdown]

By default each (cell, system) comes from the latest run that measured it, so a cell's systems may
come from different runs (the runs used are listed under the table).
"""

import argparse
import json
import statistics

ORDER = ["chronoflow", "duckdb", "duckdb_naive", "polars", "polars_chunked", "spark"]
LABEL = {"chronoflow": "chronoflow", "duckdb": "DuckDB 2.0", "duckdb_naive": "DuckDB naive",
         "polars": "Polars 2.1", "polars_chunked": "Polars 2.1 split by key",
         "spark": "Spark 4 local[2]"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--run", help="only the lines of this run")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    with open(args.results) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    if args.run:
        lines = [x for x in lines if x["run"] == args.run]
    latest = {}
    for x in lines:
        key = (x["events"], x["density"], x["system"])
        latest[key] = max(latest.get(key, ""), x["run"])
    cells = {}
    for x in lines:
        key = (x["events"], x["density"], x["system"])
        if x["run"] == latest[key]:
            cells.setdefault(key[:2], {}).setdefault(x["system"], []).append(x)
    runs = sorted(set(latest.values()))

    def summary(reps):
        ok = [x for x in reps if x["status"] == "ok"]
        if not ok:
            return None
        walls = sorted(x["wall_s"] for x in ok)
        computes = [x["compute_s"] for x in ok if x.get("compute_s") is not None]
        return {"wall": statistics.median(walls), "lo": walls[0], "hi": walls[-1], "n": len(ok),
                "compute": statistics.median(computes) if computes else None,
                "peak": statistics.median(x["peak_kb"] for x in ok),
                "identical": None if all(x.get("identical") is None for x in ok) else all(x.get("identical") for x in ok if x.get("identical") is not None),
                "to_duckdb": None if all(x.get("identical_to_duckdb") is None for x in ok) else all(x.get("identical_to_duckdb") for x in ok if x.get("identical_to_duckdb") is not None),
                "skipped": ok[0].get("skipped"),
                "load": sorted(float((x.get("load_before") or "nan").split(" ")[0]) for x in ok)}

    head = ["events", "per key", "system", "wall s", "compute s", "peak MB", "µs/event", "wall vs chronoflow",
            "identical to chronoflow", "to DuckDB", "load"]
    rows = []
    yes = {True: "yes", False: "NO", None: "-"}
    for (events, density), systems in sorted(cells.items()):
        cf = summary(systems.get("chronoflow", []))
        for name in sorted(systems, key=lambda s: ORDER.index(s) if s in ORDER else 99):
            s = summary(systems[name])
            first = [f"{events:,}", str(density), LABEL.get(name, name)]
            if s is None:
                x = systems[name][-1]
                rows.append(first + [x["status"], "", "", "", "", x.get("note", ""), "", ""])
                continue
            wall = f"{s['wall']:.1f}" + (f" ({s['lo']:.1f}-{s['hi']:.1f})" if s["n"] > 1 else "")
            ratio = f"{s['wall'] / cf['wall']:.2f}x" if cf and name != "chronoflow" else ""
            ident = "reference" if name == "chronoflow" else yes[s["identical"]]
            if s["skipped"]:
                ident += f" (except {', '.join(s['skipped'])})"
            load = s["load"]
            rows.append(first + [wall, f"{s['compute']:.1f}" if s["compute"] is not None else "",
                                 f"{s['peak'] / 1024:,.0f}", f"{s['wall'] / events * 1e6:.2f}", ratio, ident,
                                 "reference" if name == "duckdb" else yes[s["to_duckdb"]],
                                 f"{load[0]:.1f}" + (f"-{load[-1]:.1f}" if f"{load[-1]:.1f}" != f"{load[0]:.1f}" else "")])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---:" if i not in (2, 8, 9) else "---" for i in range(len(head))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}: wall = the process's elapsed time, median (range) "
          "over repetitions (Spark's includes the JVM start); compute = the peer's own figure from reading the "
          "inputs to writing the output; peak = max RSS (Spark: Python + JVM); ratio = system's median wall / "
          "chronoflow's in the same cell; load = the VM's 1-minute load average when the system started (2 cores, "
          "shared with other work).")


if __name__ == "__main__":
    main()
