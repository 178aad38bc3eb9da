"""The Airflow side of the planning benchmark: what Chronon users run today.

Reads a repo of compiled Chronon configs (Airbnb layout) the way Chronon's Airflow helpers do, and
builds the same team DAGs chronoflow plans: per GroupBy sensors -> upload -> upload-to-kv, per Join
sensors -> backfill, per StagingQuery sensors -> backfill, sensors de-duplicated by name within a DAG.
Timed by loading it into a DagBag (what Airflow's DAG processor does on every parse).

The repo is taken from CHRONON_REPO.
"""

import json
import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from airflow.sdk.bases.sensor import BaseSensorOperator

REPO = os.environ["CHRONON_REPO"]
START = datetime(2023, 1, 1)


class PartitionSensor(BaseSensorOperator):
    """Stands in for Chronon's NamedHivePartitionSensor (no Hive here); never poked in this benchmark."""

    def __init__(self, partition, end=None, **kwargs):
        super().__init__(**kwargs)
        self.partition = partition
        self.end = end

    def poke(self, context):
        return True


def normalize(name):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def load(kind):
    root = os.path.join(REPO, "production", kind)
    if not os.path.isdir(root):
        return
    for team in sorted(os.listdir(root)):
        for file in sorted(os.listdir(os.path.join(root, team))):
            path = os.path.join(root, team, file)
            with open(path) as f:
                yield team, path, json.load(f)


dags = {}


def dag_for(dag_id, concurrency):
    if dag_id not in dags:
        dags[dag_id] = DAG(
            dag_id,
            schedule="@daily",
            start_date=START,
            catchup=False,
            max_active_tasks=concurrency,
            default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
        )
    return dags[dag_id]


def dependencies(conf):
    out = []
    for dep in conf["metaData"].get("dependencies", []):
        out.append(json.loads(dep) if dep.lstrip().startswith("{") else {"name": "wf__" + dep, "spec": dep})
    return out


def sensors(dag, conf):
    ops = []
    for dep in dependencies(conf):
        task_id = normalize(dep["name"])
        if task_id in dag.task_dict:
            ops.append(dag.task_dict[task_id])
        else:
            ops.append(
                PartitionSensor(
                    task_id=task_id,
                    partition=dep["spec"],
                    end=dep.get("end"),
                    dag=dag,
                    retries=3,
                    execution_timeout=timedelta(hours=48),
                )
            )
    return ops


def run(dag, mode, conf, path):
    return BashOperator(
        task_id=f"{normalize(conf['metaData']['name'])}__{mode.replace('-', '_')}",
        bash_command=f"run.py --mode {mode} --conf {path} --ds {{{{ ds }}}}",
        dag=dag,
    )


for team, path, conf in load("group_bys"):
    if not conf["metaData"].get("online"):
        continue
    dag = dag_for(f"chronon_gb_batch_{team}", 300)
    upload = run(dag, "upload", conf, path)
    sensors(dag, conf) >> upload >> run(dag, "upload-to-kv", conf, path)

for team, path, conf in load("joins"):
    if conf["metaData"].get("offlineSchedule", "@daily") == "@never":
        continue
    dag = dag_for(f"chronon_join_{team}", 100)
    sensors(dag, conf) >> run(dag, "backfill", conf, path)

for team, path, conf in load("staging_queries"):
    dag = dag_for(f"chronon_staging_query_{team}", 100)
    sensors(dag, conf) >> run(dag, "backfill", conf, path)

globals().update(dags)
