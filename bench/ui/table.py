"""Prints the UI benchmark's JSON lines (bench/ui.sh) as a table with chronoflow/Airflow ratios."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
airflow = {r["what"]: r for r in rows if r["peer"] == "airflow"}
# The same page in both: chronoflow's one call vs Airflow's calls for it.
pairs = {
    "grid_5000x25": "grid_5000x25", "grid_5000x10": "grid_5000x10",
    "dag_list_1000": "dag_list_1000_runs25", "grid_page_5000x25": "grid_page_5000x25",
}
print(f"{'measurement':<22} {'peer':<20} {'median ms':>10} {'p95 ms':>10} {'Airflow / chronoflow':>22}")
for r in rows:
    peer = r["peer"] + (f" ({r['store']})" if "store" in r else "")
    ratio = ""
    if r["peer"] == "chronoflow" and pairs.get(r["what"]) in airflow:
        a = airflow[pairs[r["what"]]]
        ratio = f"{a['median_ms'] / max(r['median_ms'], 0.1):.0f}x (vs {a['what']})"
    print(f"{r['what']:<22} {peer:<20} {r['median_ms']:>10} {r['p95_ms']:>10} {ratio:>22}")
