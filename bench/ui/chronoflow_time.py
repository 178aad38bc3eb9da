"""Times the chronoflow web UI's JSON calls for the grid and DAG list pages (the same shapes airflow_time.py
times on Airflow 3.3).

    python chronoflow_time.py BASE_URL       (e.g. http://127.0.0.1:18686; any python3, stdlib only)

Prints one JSON line per measurement on stdout, in airflow_time.py's format, with "peer": "chronoflow".
One sample is the wall time of the page's calls, one after the other on one keep-alive HTTP/1.1 connection
over loopback, each response read to its end. Percentiles are nearest-rank. CHRONOFLOW_UI_WARMUP (default 2)
unmeasured repetitions, then CHRONOFLOW_UI_N (default 20) measured ones; `first_request_ms` is the very first
call after the server started (the grid then reads every cell from the store; later calls find the cells of
finished runs in the server's cache).

What the pages call (crates/chronoflow-web/assets/app.js):
- grid (/ui/dags/{dag_id}?tab=grid): GET /api/v1/ui/dags/{dag_id}/grid?runs=R — tasks, runs and every cell
  in one answer (one character per cell);
- DAG list (/ui/dags): GET /api/v1/ui/dags — every DAG with its last 25 runs (no paging), plus
  GET /api/v1/ui/me once per page load.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18686")
N = int(os.environ.get("CHRONOFLOW_UI_N", "20"))
WARMUP = int(os.environ.get("CHRONOFLOW_UI_WARMUP", "2"))
BIG = os.environ.get("CHRONOFLOW_UI_BIG_DAG", "ui_bench_big")
tasks = int(os.environ.get("CHRONOFLOW_UI_TASKS", "5000"))
runs = int(os.environ.get("CHRONOFLOW_UI_RUNS", "25"))
n_dags = int(os.environ.get("CHRONOFLOW_UI_DAGS", "1000"))
store = os.environ.get("CHRONOFLOW_UI_STORE", "sqlite")
conn = http.client.HTTPConnection(base.hostname, base.port, timeout=600)


def get(path):
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, (time.perf_counter() - t0) * 1e3


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(int(p * len(xs)), len(xs) - 1)]


def measure(what, paths, check, extra=None):
    totals, per_call, sizes, cold = [], {}, {}, None
    for rep in range(WARMUP + N):
        t_start, bodies = time.perf_counter(), {}
        for label, path in paths:
            status, body, ms = get(path)
            if status != 200:
                sys.exit(f"{what}: GET {path}: {status} {body[:300]!r}")
            bodies[label] = body
            if rep >= WARMUP:
                per_call.setdefault(label, []).append(ms)
                sizes[label] = len(body)
        total = (time.perf_counter() - t_start) * 1e3
        if rep == 0:
            cold = total  # the first request after start: no cached grid cells yet
            check(bodies)
        if rep >= WARMUP:
            totals.append(total)
    line = {
        "peer": "chronoflow", "store": store, "what": what, "median_ms": round(pct(totals, 0.5), 1),
        "p95_ms": round(pct(totals, 0.95), 1), "n": N,
        "calls": [{"call": k, "median_ms": round(pct(v, 0.5), 1), "p95_ms": round(pct(v, 0.95), 1),
                   "bytes": sizes[k]} for k, v in per_call.items()],
        "first_request_ms": round(cold, 1),
        "loadavg_1m": float(open("/proc/loadavg").read().split()[0]),
    }
    line.update(extra or {})
    print(json.dumps(line), flush=True)


def grid_check(r):
    def check(bodies):
        g = json.loads(bodies["grid"])
        states = {}
        for row in g["cells"]:
            for c in row:
                states[c] = states.get(c, 0) + 1
        print(f"[chronoflow_time] grid: {len(g['tasks'])} tasks, {len(g['runs'])} runs, cell codes {states}",
              file=sys.stderr)
        if len(g["tasks"]) != tasks or len(g["runs"]) != r or sum(states.values()) != tasks * r \
                or "-" in states or "f" not in states or "s" not in states:
            sys.exit("grid: unexpected answer")
    return check


def list_check(bodies):
    d = json.loads(bodies["dags"])
    print(f"[chronoflow_time] dag list: {len(d['dags'])} DAGs, {len(d['dags'][0]['recent_runs'])} recent runs"
          " on the first", file=sys.stderr)
    if len(d["dags"]) != n_dags or len(d["dags"][0]["recent_runs"]) != 25:
        sys.exit("dag list: unexpected answer")
    # The marks are the DAG's runs as the REST API lists them (ids, dates and states, oldest first).
    first = d["dags"][0]
    status, body, _ = get(f"/api/v1/runs?dag_id={urllib.parse.quote(first['dag_id'])}&limit=25")
    runs = [(r["run_id"], r["ds"], r["state"]) for r in reversed(json.loads(body)["runs"])]
    if runs != [(r["run_id"], r["ds"], r["state"]) for r in first["recent_runs"]]:
        sys.exit(f"dag list: recent runs differ from /api/v1/runs: {first['recent_runs'][:2]} vs {runs[:2]}")


measure(f"grid_{tasks}x{runs}", [("grid", f"/api/v1/ui/dags/{BIG}/grid?runs={runs}")], grid_check(runs))
measure(f"grid_{tasks}x10", [("grid", f"/api/v1/ui/dags/{BIG}/grid?runs=10")], grid_check(10))
measure(f"dag_list_{n_dags}", [("dags", "/api/v1/ui/dags")], list_check,
        {"note": "one call: every DAG with its last 25 runs"})
