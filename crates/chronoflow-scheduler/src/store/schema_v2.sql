-- chronoflow state store, version 2: applied on top of version 1 (schema.sql), in the same
-- transaction on a new store. Portable SQL, one column per ALTER (SQLite's rule).

-- What a try cost: the command's exit status (negative: killed by that signal), CPU time
-- (user + system) and peak resident memory. NULL when not measured.
ALTER TABLE task_tries ADD COLUMN exit_code BIGINT;
ALTER TABLE task_tries ADD COLUMN cpu_ms BIGINT;
ALTER TABLE task_tries ADD COLUMN max_rss_kb BIGINT;

-- Recent final failures (`state = 'failed' AND ended_ms >= ...`) without a scan of every try.
CREATE INDEX task_tries_by_state_ended ON task_tries (state, ended_ms);

-- API tokens of the web UI: `team` is a team or '*', and only a hash of the secret is kept.
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    team TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    last_used_ms BIGINT
);

-- Signed-in UI sessions, by a hash of the cookie's value.
CREATE TABLE ui_sessions (
    session_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- The web UI's DAG list: each DAG's newest runs by an index seek.
CREATE INDEX dag_runs_by_dag_logical ON dag_runs (dag_id, logical_ms);

-- Moves whenever one of the DAG's runs is created or changes state (in the same transaction), so
-- the web UI's DAG list re-reads only the DAGs whose runs changed, whichever process changed them.
ALTER TABLE dags ADD COLUMN runs_version BIGINT NOT NULL DEFAULT 0;
