"""`dagbag.py OUT FOLDER...`: loads the DAG files of each folder into an Airflow DagBag and writes
to OUT, as JSON, the import errors and each DAG's schedule, limits, params and tasks (upstream,
retries, sensors' settings), in the shape of `chronoflow plan --format json` so the Rust test
compares them (Airflow logs to stdout, so the result goes to a file)."""

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag


def schedule(dag):
    timetable = dag.timetable
    name = type(timetable).__name__
    if name == "CronDataIntervalTimetable":
        return {"kind": "cron", "expr": timetable.expression}
    if name == "DeltaDataIntervalTimetable":
        return {"kind": "interval", "minutes": int(timetable.delta.total_seconds() // 60)}
    if name == "NullTimetable":
        return {"kind": "manual"}
    return {"kind": name}


def task(t):
    out = {
        "operator": type(t).__name__,
        "upstream": sorted(t.upstream_task_ids),
        "retries": t.retries,
        "retry_delay_seconds": int(t.retry_delay.total_seconds()),
        "queue": t.queue,
        "pool": t.pool,
        "executor_config": t.executor_config or {},
    }
    if hasattr(t, "poke_interval"):
        out["poke_interval_seconds"] = int(t.poke_interval)
        out["timeout_seconds"] = int(t.timeout)
        out["mode"] = t.mode
    if type(t).__name__ == "UpstreamWait":
        out["external_dag_id"] = t.external_dag_id
        out["external_task_id"] = t.external_task_id
    if hasattr(t, "bash_command"):
        out["bash_command"] = t.bash_command
    return out


result = {"import_errors": {}, "dags": {}, "files": {}}
for folder in sys.argv[2:]:
    bag = DagBag(dag_folder=folder, safe_mode=False)
    for path, error in bag.import_errors.items():
        result["import_errors"][path] = error
    for dag_id, dag in bag.dags.items():
        result["files"][dag_id] = os.path.relpath(dag.fileloc, folder)
        result["dags"][f"{os.path.basename(folder)}/{dag_id}"] = {
            "schedule": schedule(dag),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "max_active_tasks": dag.max_active_tasks,
            "params": sorted(dag.params.keys()),
            "tags": sorted(dag.tags),
            "tasks": {t.task_id: task(t) for t in dag.tasks},
        }
with open(sys.argv[1], "w") as out:
    json.dump(result, out, indent=1, sort_keys=True)
