-- chronoflow state store, version 4: applied on top of version 3. Portable SQL.

-- The newest consistency and drift figures of each Join, as the publishing after the OOC DAG's
-- metrics job left them: what the consistency gauges of /metrics show. Kept here rather than in
-- a process's memory, so every process serving the API shows them and a restart loses nothing.
-- `ds` is the day the figures are of (a rerun of an older day does not replace a newer one),
-- `figures_json` the gauges (per feature rate and mismatches, per feature and side PSI).
CREATE TABLE consistency_gauges (
    join_name TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    ds TEXT NOT NULL,
    figures_json TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
