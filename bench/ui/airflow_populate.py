"""Writes finished DAG runs and task instances for the UI benchmark straight into Airflow's metadata DB.

    python airflow_populate.py            (run with the Airflow venv's python and the bench's AIRFLOW_* env)

Needs the DAGs of airflow_dags.py already serialized in the DB (`airflow dags reserialize`). No task runs:
for every DAG it inserts AIRFLOW_UI_RUNS (default 25) daily `scheduled` runs, oldest 2025-01-01, with one
task instance per task of the DAG's latest serialized version, all in terminal states:
- ui_big: every 5th run (run index % 5 == 3) failed; in a failed run every 40th task of the second stage
  (depth 2 in the DAG) failed and its downstream tasks are upstream_failed, everything else success.
- ui_small_*: the run with (dag number + run index) % 10 == 0 failed; in it the depth-2 task failed and its
  downstream tasks are upstream_failed.
The rows are written with two INSERT ... SELECT statements (server-side, no ORM objects), then read back
through Airflow's ORM as a check, and the DAGs are unpaused (reserialize leaves new DAGs paused). Prints a JSON
line with counts and timings on stdout.
"""

import json
import os
import time

from sqlalchemy import func, select, text

from airflow.models.dag_version import DagVersion
from airflow.models.dagrun import DagRun
from airflow.models.serialized_dag import SerializedDagModel
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session

RUNS = int(os.environ.get("AIRFLOW_UI_RUNS", "25"))
t0 = time.perf_counter()


def task_rows(dag, failing_every):
    """(task_id, state in a failed run) for every task: depth-2 tasks picked by failing_every fail,
    their downstream tasks are upstream_failed, all others success."""
    depth, todo = {}, dict(dag.task_dict)
    while todo:  # Kahn-style: give a depth to every task whose upstream tasks all have one
        ready = [t for t, task in todo.items() if all(u in depth for u in task.upstream_task_ids)]
        for t in ready:
            depth[t] = 1 + max((depth[u] for u in todo.pop(t).upstream_task_ids), default=-1)
    second = sorted(t for t, d in depth.items() if d == 2)
    failing = set(second[::failing_every])
    state = {t: "success" for t in depth}
    for t in failing:
        for d in dag.get_task(t).get_flat_relative_ids(upstream=False):
            state[d] = "upstream_failed"
    for t in failing:
        state[t] = "failed"
    return list(state.items())


with create_session() as session:
    versions = dict(
        session.execute(
            select(DagVersion.dag_id, func.max(DagVersion.version_number)).group_by(DagVersion.dag_id)
        ).all()
    )
    dag_ids = sorted(d for d in versions if d == "ui_big" or d.startswith("ui_small_"))
    tasks, runs = [], []  # (dag_id, task_id, failed_run_state), (dag_id, run_index, state)
    for dag_id in dag_ids:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        if dag_id == "ui_big":
            tasks += [(dag_id, t, s) for t, s in task_rows(dag, 40)]
            runs += [(dag_id, r, "failed" if r % 5 == 3 else "success") for r in range(RUNS)]
        else:
            n = int(dag_id.rsplit("_", 1)[1])
            tasks += [(dag_id, t, s) for t, s in task_rows(dag, 1)]
            runs += [(dag_id, r, "failed" if (n + r) % 10 == 0 else "success") for r in range(RUNS)]
    t_read = time.perf_counter()

    session.execute(text("create temp table bench_tasks (dag_id text, task_id text, fail_state text) on commit drop"))
    session.execute(text("create temp table bench_runs (dag_id text, r int, state text) on commit drop"))
    cols = lambda rows, i: [row[i] for row in rows]  # noqa: E731
    session.execute(
        text("insert into bench_tasks select * from unnest(cast(:a as text[]), cast(:b as text[]), cast(:c as text[]))"),
        {"a": cols(tasks, 0), "b": cols(tasks, 1), "c": cols(tasks, 2)},
    )
    session.execute(
        text("insert into bench_runs select * from unnest(cast(:a as text[]), cast(:b as int[]), cast(:c as text[]))"),
        {"a": cols(runs, 0), "b": cols(runs, 1), "c": cols(runs, 2)},
    )
    # A daily run for logical date L covers [L, L+1 day) and may start at L+1 day (run_after).
    session.execute(
        text("""
        insert into dag_run (dag_id, queued_at, logical_date, start_date, end_date, state, run_id, run_type,
            triggered_by, conf, data_interval_start, data_interval_end, run_after, last_scheduling_decision,
            log_template_id, created_at, updated_at, clear_number, span_status, created_dag_version_id)
        select b.dag_id, l + interval '1 day', l, l + interval '1 day 5 seconds',
            l + interval '1 day 5 seconds' + make_interval(secs => 600 + 300 * random()), b.state,
            'scheduled__' || to_char(l at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00', 'scheduled',
            'TIMETABLE', '{}'::jsonb, l, l + interval '1 day', l + interval '1 day', now(),
            (select max(id) from log_template), now(), now(), 0, 'not_started', v.id
        from bench_runs b
        cross join lateral (select timestamptz '2025-01-01 00:00:00+00' + b.r * interval '1 day' as l) t
        join dag_version v on v.dag_id = b.dag_id
            and v.version_number = (select max(version_number) from dag_version w where w.dag_id = b.dag_id)
        """)
    )
    session.execute(
        text("""
        insert into task_instance (id, task_id, dag_id, run_id, map_index, start_date, end_date, duration, state,
            try_number, max_tries, hostname, unixname, pool, pool_slots, queue, priority_weight, operator,
            custom_operator_name, queued_dttm, scheduled_dttm, executor, updated_at, span_status,
            task_display_name, dag_version_id)
        select gen_random_uuid(), t.task_id, t.dag_id, dr.run_id, -1, s, s + make_interval(secs => d), d, x.state,
            case when x.state = 'upstream_failed' then 0 else 1 end, 0, 'worker-1', 'airflow', 'default_pool', 1,
            'default', 1, 'EmptyOperator', 'EmptyOperator', dr.start_date, dr.start_date, null, now(),
            'not_started', t.task_id, dr.created_dag_version_id
        from dag_run dr
        join bench_tasks t on t.dag_id = dr.dag_id
        cross join lateral (select case when dr.state = 'failed' then t.fail_state else 'success' end as state) x
        cross join lateral (select dr.start_date + make_interval(secs => 300 * random()) as s,
                                   1 + 59 * random() as d) y
        """)
    )
    # `airflow dags reserialize` leaves new DAGs paused ([core] dags_are_paused_at_creation); show them active.
    session.execute(text("update dag set is_paused = false where dag_id = 'ui_big' or dag_id like 'ui_small_%'"))
t_insert = time.perf_counter()
with create_session() as session:
    session.execute(text("analyze dag_run"))
    session.execute(text("analyze task_instance"))

# Read back through Airflow's ORM.
with create_session() as session:
    n_runs = session.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == "ui_big"))
    by_state = dict(
        session.execute(select(TI.state, func.count()).where(TI.dag_id == "ui_big").group_by(TI.state)).all()
    )
    some_run = session.scalars(select(DagRun).where(DagRun.dag_id == "ui_big").limit(1)).one()
    assert some_run.triggered_by is not None and some_run.run_type == "scheduled", some_run
    n_all_runs = session.scalar(select(func.count()).select_from(DagRun))
    n_all_tis = session.scalar(select(func.count()).select_from(TI))
print(json.dumps({
    "dags": len(dag_ids), "big_runs": n_runs, "big_task_instances": {str(k): v for k, v in by_state.items()},
    "all_runs": n_all_runs, "all_task_instances": n_all_tis,
    "read_dags_s": round(t_read - t0, 2), "insert_s": round(t_insert - t_read, 2),
    "total_s": round(time.perf_counter() - t0, 2),
}))
