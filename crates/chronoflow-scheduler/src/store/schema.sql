-- chronoflow state store, version 1. Portable SQL: the same text runs on SQLite and PostgreSQL
-- (integers are BIGINT, flags are 0/1, times are milliseconds since the epoch, UTC).

CREATE TABLE dags (
    dag_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    team TEXT NOT NULL,
    paused BIGINT NOT NULL,
    removed BIGINT NOT NULL,
    last_logical_ms BIGINT,
    updated_ms BIGINT NOT NULL
);

-- Every version of every DAG ever seen: runs keep the one they started with.
CREATE TABLE dag_versions (
    dag_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec_hash TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (dag_id, version)
);

CREATE TABLE dag_runs (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    run_type TEXT NOT NULL,
    logical_ms BIGINT NOT NULL,
    ds TEXT NOT NULL,
    start_ds TEXT NOT NULL,
    end_ds TEXT NOT NULL,
    state TEXT NOT NULL,
    -- Task instances not yet in a terminal state, and those that failed: kept in step with the
    -- task instances so finishing a task never scans its run.
    unfinished BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    ended_ms BIGINT,
    PRIMARY KEY (dag_id, run_id)
);
CREATE INDEX dag_runs_by_state ON dag_runs (state, dag_id, logical_ms);

CREATE TABLE task_instances (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    team TEXT NOT NULL,
    is_sensor BIGINT NOT NULL,
    state TEXT NOT NULL,
    try_number BIGINT NOT NULL,
    max_tries BIGINT NOT NULL,
    run_order BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    ds TEXT NOT NULL,
    start_ds TEXT NOT NULL,
    end_ds TEXT NOT NULL,
    ready_ms BIGINT,
    queued_ms BIGINT,
    started_ms BIGINT,
    ended_ms BIGINT,
    heartbeat_ms BIGINT,
    next_ms BIGINT,
    worker_id TEXT,
    error TEXT,
    PRIMARY KEY (dag_id, run_id, task_id)
);
CREATE INDEX ti_by_state ON task_instances (state, next_ms);
CREATE INDEX ti_by_dag_state ON task_instances (dag_id, state, run_order, priority, task_id);
CREATE INDEX ti_by_team_state ON task_instances (team, state);
CREATE INDEX ti_by_worker ON task_instances (worker_id, state);

-- One row per try: who ran it, how it ended, where its log is.
CREATE TABLE task_tries (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    try_number BIGINT NOT NULL,
    worker_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    error TEXT,
    log_path TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, try_number)
);

CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    stopped_ms BIGINT
);

-- The content hash of each config as of its last successful metadata upload.
CREATE TABLE metadata_uploads (
    job_id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    uploaded_ms BIGINT NOT NULL
);

-- Long-running streaming jobs and who owns them (keep-alive: start if absent, restart if dead).
CREATE TABLE streaming_jobs (
    job_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    log_path TEXT NOT NULL
);

-- The last re-planning of the config repo (one row): whether it planned, and why not.
CREATE TABLE plan_status (
    id BIGINT PRIMARY KEY,
    ok BIGINT NOT NULL,
    message TEXT NOT NULL,
    dags BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
