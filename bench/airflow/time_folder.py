"""`time_folder.py FOLDER RUNS`: loads every DAG file of FOLDER into a DagBag RUNS times (what
Airflow's DAG processor does on each parse); prints the median and range, in ms."""

import statistics
import sys
import time

from airflow.dag_processing.dagbag import DagBag

folder, runs = sys.argv[1], int(sys.argv[2])
samples = []
for _ in range(runs):
    t = time.perf_counter()
    bag = DagBag(dag_folder=folder, safe_mode=False)
    samples.append((time.perf_counter() - t) * 1e3)
    if bag.import_errors:
        sys.exit(f"import errors: {bag.import_errors}")
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(f"airflow DagBag: {len(bag.dags)} DAGs, {tasks} tasks; median {statistics.median(samples):.0f} ms, min {min(samples):.0f}, max {max(samples):.0f} ({runs} runs)")
