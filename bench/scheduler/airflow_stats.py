"""Prints one JSON line of scheduler metrics for the latest run of a DAG, read from Airflow's metadata DB.

    python airflow_stats.py DAG_ID SHAPE

throughput = tasks / (last end_date - first start_date).
dispatch latency of a task = its start_date - the time its dependencies were met: the latest end_date of
its upstream tasks, or the DAG run's start_date for a task with no upstream. The upstream sets come from the
DAG as Airflow serialized it, so the metric does not trust the shape's own description.
Percentiles are nearest-rank (index floor(p*n), clamped), in ms.
"""

import json
import sys

from sqlalchemy import select

from airflow.models.dagrun import DagRun
from airflow.models.serialized_dag import SerializedDagModel
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session

dag_id, shape = sys.argv[1], sys.argv[2]
with create_session() as session:
    dag = SerializedDagModel.get_dag(dag_id, session=session)
    run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc())).first()
    tis = session.scalars(select(TI).where(TI.dag_id == dag_id, TI.run_id == run.run_id)).all()
    bad = [(ti.task_id, ti.state) for ti in tis if ti.state != "success"]
    if run.state != "success" or bad or len(tis) != len(dag.task_dict):
        sys.exit(f"{dag_id}: run {run.state}, {len(tis)} task instances, not successful: {bad[:5]}")
    end = {ti.task_id: ti.end_date for ti in tis}
    waits = []
    for ti in tis:
        ready = max((end[u] for u in dag.task_dict[ti.task_id].upstream_task_ids), default=run.start_date)
        waits.append((ti.start_date - ready).total_seconds() * 1e3)
    seconds = (max(end.values()) - min(ti.start_date for ti in tis)).total_seconds()

waits.sort()
pct = lambda p: waits[min(int(p * len(waits)), len(waits) - 1)]
print(json.dumps({
    "system": "airflow",
    "shape": shape,
    "tasks": len(tis),
    "seconds": round(seconds, 3),
    "throughput_per_s": round(len(tis) / seconds, 3),
    "dispatch_p50_ms": round(pct(0.50), 1),
    "dispatch_p99_ms": round(pct(0.99), 1),
}))
