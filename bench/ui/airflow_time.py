"""Times the API calls that Airflow 3.3's React UI makes for the grid and the DAG list pages.

    python airflow_time.py BASE_URL          (e.g. http://127.0.0.1:18090; any python3, stdlib only)

Prints one JSON line per measurement on stdout:
  {"peer": "airflow", "what": ..., "median_ms": ..., "p95_ms": ..., "n": ..., "calls": [...]}
where one sample is the wall time of the whole set of calls of that measurement, made one after the other on
one keep-alive HTTP/1.1 connection over loopback, each response read to its end (the NDJSON stream of
ti_summaries included). `calls` gives, per call, its path, median and p95 ms and response bytes.
Percentiles are nearest-rank (index floor(p*n), clamped); AIRFLOW_UI_WARMUP (default 2) unmeasured
repetitions come first, then AIRFLOW_UI_N (default 10) measured ones.

What the pages call (from the UI bundle in airflow/ui/dist/assets/index-*.js of apache-airflow 3.3.2):
- grid (left panel of the DAG page /dags/{dag_id}?limit=L; L is the URL's `limit`, default 10), fired together:
  GET /ui/grid/structure/{dag_id}?include_upstream=false&include_downstream=false&limit=L&order_by=-run_after,
  GET /ui/grid/runs/{dag_id}?offset=0&limit=L+1&order_by=-run_after (one more, to know if older runs exist),
  GET /ui/grid/runs/{dag_id}?limit=1&order_by=-run_after (is the latest run shown), then, once runs answered,
  GET /ui/grid/ti_summaries/{dag_id}?run_ids=..&run_ids=.. with the first L run ids: an NDJSON stream, one
  line per run, that the page renders column by column as lines arrive.
- DAG list (/dags): GET /ui/dags?dag_runs_limit=R&limit=P&offset=0&tags_match_mode=any&exclude_stale=true
  &order_by=dag_display_name with P the page size ([api] fallback_page_limit, 50) and R 14 in the default
  card view (1 in the table view); also GET /api/v2/dagTags?..., /api/v2/importErrors?limit=1 and
  /api/v2/dags/~/dagRuns?limit=1&state=running&state=queued. `limit` is capped
  by [api] maximum_page_limit (100 by default; airflow.sh raises it to 1000 for the one-page variant).
Auth: SimpleAuthManager with simple_auth_manager_all_admins=True; GET /auth/token answers a JWT with no
credentials, sent as `Authorization: Bearer` (the browser sends the same JWT as the `_token` cookie).
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18090")
N = int(os.environ.get("AIRFLOW_UI_N", "10"))
WARMUP = int(os.environ.get("AIRFLOW_UI_WARMUP", "2"))
BIG = os.environ.get("AIRFLOW_UI_BIG_DAG", "ui_big")
conn = http.client.HTTPConnection(base.hostname, base.port, timeout=600)


def get(path, headers=None):
    """GET, read the whole body; returns (status, body bytes, ms to the first body line, ms in total)."""
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    first = resp.readline()  # the first NDJSON line of a stream (or the first line of any body)
    t_first = time.perf_counter()
    body = first + resp.read()
    t_end = time.perf_counter()
    return resp.status, body, (t_first - t0) * 1e3, (t_end - t0) * 1e3


status, body, _, _ = get("/auth/token")
if status != 201 and status != 200:
    sys.exit(f"GET /auth/token: {status} {body[:200]!r}")
AUTH = {"Authorization": "Bearer " + json.loads(body)["access_token"]}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(int(p * len(xs)), len(xs) - 1)]


def measure(what, make_calls, check, extra=None):
    """make_calls(): list of (label, path-producing function of previous bodies). Runs WARMUP + N times."""
    totals, per_call, sizes, firsts = [], {}, {}, []
    for rep in range(WARMUP + N):
        bodies, t_start = {}, time.perf_counter()
        for label, path_of in make_calls():
            path = path_of(bodies)
            status, body, t_first, t_all = get(path, AUTH)
            if status != 200:
                sys.exit(f"{what}: GET {path[:200]}: {status} {body[:300]!r}")
            bodies[label] = body
            if rep >= WARMUP:
                per_call.setdefault(label, []).append(t_all)
                sizes[label] = len(body)
                if label == "ti_summaries":
                    firsts.append(t_first)
        total = (time.perf_counter() - t_start) * 1e3
        if rep == 0:
            check(bodies)
        if rep >= WARMUP:
            totals.append(total)
    line = {
        "peer": "airflow", "what": what, "median_ms": round(pct(totals, 0.5), 1),
        "p95_ms": round(pct(totals, 0.95), 1), "n": N,
        "calls": [
            {"call": label, "median_ms": round(pct(ts, 0.5), 1), "p95_ms": round(pct(ts, 0.95), 1),
             "bytes": sizes[label]}
            for label, ts in per_call.items()
        ],
    }
    if firsts:
        line["ti_summaries_first_run_median_ms"] = round(pct(firsts, 0.5), 1)
    line["loadavg_1m"] = float(open("/proc/loadavg").read().split()[0])  # other load on the machine, if any
    line.update(extra or {})
    print(json.dumps(line), flush=True)


def grid_calls(limit):
    """The grid component's calls for `limit` runs, as the 3.3.2 page sends them (see the module doc)."""
    q = f"limit={limit}&order_by=-run_after"

    def ti_path(bodies):
        run_ids = [r["run_id"] for r in json.loads(bodies["runs"])][:limit]  # it asks for one more, shows limit
        return f"/ui/grid/ti_summaries/{BIG}?" + urllib.parse.urlencode([("run_ids", r) for r in run_ids])

    return lambda: [
        ("structure", lambda b: f"/ui/grid/structure/{BIG}?include_upstream=false&include_downstream=false&{q}"),
        ("runs", lambda b: f"/ui/grid/runs/{BIG}?offset=0&limit={limit + 1}&order_by=-run_after"),
        ("latest_run", lambda b: f"/ui/grid/runs/{BIG}?limit=1&order_by=-run_after"),
        ("ti_summaries", ti_path),
    ]


def grid_check(runs, tasks):
    def check(bodies):
        structure, grid_runs = json.loads(bodies["structure"]), json.loads(bodies["runs"])
        lines = [json.loads(x) for x in bodies["ti_summaries"].splitlines() if x.strip()]
        states = {}
        for line in lines:
            for ti in line["task_instances"]:
                states[ti["state"]] = states.get(ti["state"], 0) + 1
        ok = len(grid_runs) >= runs and len(lines) == runs and len(structure) == tasks
        ok = ok and sum(states.values()) == runs * tasks and "failed" in states and "success" in states
        print(f"[airflow_time] grid: {len(structure)} tasks, {len(grid_runs)} runs, {len(lines)} NDJSON lines,"
              f" cell states {states}", file=sys.stderr)
        if not ok:
            sys.exit("grid: unexpected answer")
    return check


def list_check(dags, runs_each):
    def check(bodies):
        bodies = {k: v for k, v in bodies.items() if k.startswith("dags")}
        n = sum(len(json.loads(b)["dags"]) for b in bodies.values())
        d = json.loads(next(iter(bodies.values())))
        print(f"[airflow_time] dag list: {n} DAGs in {len(bodies)} call(s), total_entries {d['total_entries']},"
              f" {len(d['dags'][0]['latest_dag_runs'])} recent runs on the first", file=sys.stderr)
        if n != dags or len(d["dags"][0]["latest_dag_runs"]) != runs_each:
            sys.exit("dag list: unexpected answer")
    return check


tasks = int(os.environ.get("AIRFLOW_UI_TASKS", "5000"))
runs = int(os.environ.get("AIRFLOW_UI_RUNS", "25"))
n_dags = int(os.environ.get("AIRFLOW_UI_SMALL_DAGS", "999")) + 1
dag_list = ("/ui/dags?dag_runs_limit={r}&limit={limit}&offset={offset}&tags_match_mode=any&exclude_stale=true"
            "&order_by=dag_display_name")
list_side_calls = [  # the DAG list page's other calls (filter bar, import error and running-runs badges)
    ("dag_tags", lambda b: "/api/v2/dagTags?limit=10&offset=0&order_by=name&tag_name_prefix_pattern="),
    ("import_errors", lambda b: "/api/v2/importErrors?limit=1"),
    ("running_runs", lambda b: "/api/v2/dags/~/dagRuns?limit=1&state=running&state=queued"),
]

measure(f"grid_{tasks}x{runs}", grid_calls(runs), grid_check(runs, tasks))
if runs > 10:
    measure(f"grid_{tasks}x10", grid_calls(10), grid_check(10, tasks), {"note": "the grid page's default run count"})
measure(f"dag_list_{n_dags}_first_page",
        lambda: [("dags", lambda b: dag_list.format(limit=50, offset=0, r=14))] + list_side_calls,
        list_check(min(50, n_dags), 14), {"note": "the page's calls: /ui/dags (page of 50) and 3 small ones"})
measure(f"dag_list_{n_dags}", lambda: [("dags", lambda b: dag_list.format(limit=n_dags, offset=0, r=14))],
        list_check(n_dags, 14), {"note": "one call, limit=all (maximum_page_limit raised), 14 recent runs each"})
measure(f"dag_list_{n_dags}_runs{runs}", lambda: [("dags", lambda b: dag_list.format(limit=n_dags, offset=0, r=runs))],
        list_check(n_dags, runs), {"note": f"one call, limit=all, {runs} recent runs each"})
pages = [(f"dags_offset_{o}", (lambda o: lambda b: dag_list.format(limit=100, offset=o, r=14))(o))
         for o in range(0, n_dags, 100)]
measure(f"dag_list_{n_dags}_paged100", lambda: pages, list_check(n_dags, 14),
        {"note": "pages of 100 (the default maximum_page_limit), 14 recent runs each"})
