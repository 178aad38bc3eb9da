"""Prints the engine benchmark's scaling table from result lines (bench/engine/results/DATE.jsonl):
sizes x key densities x systems, with wall time, peak memory, microseconds per event, the ratio to
chronoflow's wall time in the same cell and whether the result is identical to chronoflow's.

    python table.py RESULTS.jsonl [--run RUN_ID] [--markdown]
"""

import argparse
import json

ORDER = ["chronoflow", "duckdb", "duckdb_naive", "polars", "spark"]
LABEL = {"chronoflow": "chronoflow", "duckdb": "DuckDB 2.0", "duckdb_naive": "DuckDB naive",
         "polars": "Polars 2.1", "spark": "Spark 4 local[2]"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--run", help="only the lines of this run (default: for each cell, the latest run that measured it)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    with open(args.results) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    if args.run:
        lines = [x for x in lines if x["run"] == args.run]
    latest = {}
    for x in lines:
        cell = (x["events"], x["density"])
        latest[cell] = max(latest.get(cell, ""), x["run"])
    cells = {}
    for x in lines:
        cell = (x["events"], x["density"])
        if x["run"] == latest[cell]:
            cells.setdefault(cell, {})[x["system"]] = x
    runs = sorted(set(latest.values()))
    head = ["events", "per key", "system", "wall s", "compute s", "peak MB", "µs/event", "wall vs chronoflow",
            "identical to chronoflow", "to DuckDB", "load"]
    rows = []
    for (events, density), systems in sorted(cells.items()):
        cf = systems.get("chronoflow")
        for name in sorted(systems, key=lambda s: ORDER.index(s) if s in ORDER else 99):
            x = systems[name]
            if x["status"] != "ok":
                rows.append([f"{events:,}", str(density), LABEL.get(name, name), x["status"], "", "", "", "", x.get("note", ""), "", ""])
                continue
            ratio = ""
            if cf and cf["status"] == "ok" and name != "chronoflow":
                ratio = f"{x['wall_s'] / cf['wall_s']:.2f}x"
            yes = {True: "yes", False: "NO", None: "-"}
            ident = "reference" if name == "chronoflow" else yes[x.get("identical")]
            if x.get("skipped"):
                ident += f" (except {', '.join(x['skipped'])})"
            to_duckdb = "reference" if name == "duckdb" else yes[x.get("identical_to_duckdb")]
            rows.append([f"{events:,}", str(density), LABEL.get(name, name), f"{x['wall_s']:.1f}",
                         f"{x['compute_s']:.1f}" if x.get("compute_s") is not None else "",
                         f"{x['peak_kb'] / 1024:,.0f}", f"{x['wall_s'] / events * 1e6:.2f}", ratio, ident, to_duckdb,
                         (x.get("load_before") or "").split(" ")[0]])
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
    print(f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}: wall = the process's elapsed time (Spark's includes the JVM start); compute = the "
          "peer's own figure from reading the inputs to writing the output; peak = max RSS (Spark: Python + JVM); "
          "ratio = system's wall / chronoflow's wall in the same cell; "
          "load = the VM's 1-minute load average when the system started (2 cores; other work shares them).")


if __name__ == "__main__":
    main()
