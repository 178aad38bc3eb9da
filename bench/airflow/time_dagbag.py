"""Loads bench/airflow/chronon_dags.py into a DagBag N times; prints the median and range, in ms."""

import os
import statistics
import sys
import time

from airflow.dag_processing.dagbag import DagBag

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chronon_dags.py")
samples = []
for _ in range(runs):
    t = time.perf_counter()
    bag = DagBag(dag_folder=folder, safe_mode=False)
    samples.append((time.perf_counter() - t) * 1e3)
    if bag.import_errors:
        sys.exit(f"import errors: {bag.import_errors}")
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(f"airflow DagBag: {len(bag.dags)} DAGs, {tasks} tasks; median {statistics.median(samples):.0f} ms, min {min(samples):.0f}, max {max(samples):.0f} ({runs} runs)")
