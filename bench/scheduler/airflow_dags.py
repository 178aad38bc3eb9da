"""The Airflow side of the scheduler benchmark: DAGs of no-op Python tasks.

airflow.sh copies this file into the DAG folder once per shape, and the copy's name picks the shape:
bench_wide.py:  AIRFLOW_WIDE_TASKS independent tasks (one run makes them all ready at once);
bench_chain.py: AIRFLOW_CHAIN_TASKS tasks in a linear chain (each waits for the previous one).
One file per DAG because every Airflow task process re-parses its DAG's file before running: with both
shapes in one file, each wide task would also pay for building the chain DAG, and vice versa.

The tasks are `@task` functions that do nothing, not EmptyOperator: the scheduler marks EmptyOperator
tasks successful itself without ever sending them to an executor, so they would measure nothing.
"""

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, chain, task

shape = Path(__file__).stem.removeprefix("bench_")  # "wide" or "chain"
tasks = int(os.environ[f"AIRFLOW_{shape.upper()}_TASKS"])


@task
def noop():
    pass


with DAG(f"bench_{shape}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    ops = [noop.override(task_id=f"t{i:05d}")() for i in range(tasks)]
    if shape == "chain":
        chain(*ops)
