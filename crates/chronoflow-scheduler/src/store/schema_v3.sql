-- chronoflow state store, version 3: applied on top of version 2. Portable SQL, one column per
-- ALTER (SQLite's rule).

-- Streams a worker supervises: what its supervisor last saw. `state` is starting, running,
-- backoff (waiting to restart after a crash), failed (still restarting, past the alert
-- threshold) or stopped. `restarts` counts crashes since this worker took the stream,
-- `last_exit` is why the last run ended, `status_json` the consumer's last status file,
-- `updated_ms` when the supervisor last wrote the row (a stale row has a dead owner).
-- (No semicolons in comments: the steps are split on them.)
-- Rows of detached command jobs (older rows too) read as `running`.
ALTER TABLE streaming_jobs ADD COLUMN state TEXT NOT NULL DEFAULT 'running';
ALTER TABLE streaming_jobs ADD COLUMN restarts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE streaming_jobs ADD COLUMN last_exit TEXT;
ALTER TABLE streaming_jobs ADD COLUMN status_json TEXT;
ALTER TABLE streaming_jobs ADD COLUMN updated_ms BIGINT;
