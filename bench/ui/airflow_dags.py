"""The DAGs of the Airflow side of the UI benchmark (bench/ui/airflow.sh copies this file into the DAG folder).

ui_big:        AIRFLOW_UI_TASKS tasks (default 5,000) in chains of AIRFLOW_UI_CHAIN (default 5):
               c0000_s0 >> c0000_s1 >> ... >> c0000_s4, c0001_s0 >> ... (1,000 independent chains of 5).
ui_small_0000 ... ui_small_0999: AIRFLOW_UI_SMALL_DAGS DAGs (default 1,000) of AIRFLOW_UI_SMALL_TASKS tasks
               (default 5) in one chain, daily schedule, tagged with one of 10 "teams".

The tasks are EmptyOperators: nothing is ever run (airflow_populate.py writes the runs and task instances
straight into the metadata DB); only the serialized DAG matters to the UI endpoints.
The copy's file name picks what it builds (ui_big.py or ui_small.py), so that the two can be parsed apart.
"""

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain

which = Path(__file__).stem  # "ui_big" or "ui_small"
start = datetime(2024, 1, 1)

if which == "ui_big":
    tasks = int(os.environ.get("AIRFLOW_UI_TASKS", "5000"))
    length = int(os.environ.get("AIRFLOW_UI_CHAIN", "5"))
    with DAG("ui_big", schedule="@daily", start_date=start, catchup=False, tags=["team_big"]) as dag:
        ops = [EmptyOperator(task_id=f"c{i // length:04d}_s{i % length}") for i in range(tasks)]
        for c in range(0, tasks, length):
            chain(*ops[c : c + length])
else:
    n = int(os.environ.get("AIRFLOW_UI_SMALL_DAGS", "1000"))
    small_tasks = int(os.environ.get("AIRFLOW_UI_SMALL_TASKS", "5"))
    for d in range(n):
        dag_id = f"ui_small_{d:04d}"
        with DAG(dag_id, schedule="@daily", start_date=start, catchup=False, tags=[f"team_{d % 10}"]) as dag:
            chain(*[EmptyOperator(task_id=f"s{t}") for t in range(small_tasks)])
        globals()[dag_id] = dag
