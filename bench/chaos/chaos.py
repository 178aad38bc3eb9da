#!/usr/bin/env python3
"""Chaos run of chronoflow (run it through bench/chaos.sh).

Topology, all sharing one PostgreSQL state store, one Redis KV store and one warehouse directory:
- `standalone` (scheduler + worker + API + fetch routes): the survivor, never killed; its memory is
  sampled to show it stays flat while everything around it dies;
- a second `scheduler`, two `worker`s, a `serve` fetcher, and `run --mode upload-to-kv` processes
  started by hand: the victims, killed at random (SIGKILL mostly, SIGTERM sometimes) and restarted.

Every process runs on the same simulated clock (CHRONOFLOW_CLOCK, SPEED times the wall clock from
FIRST_DS), so the quickstart's daily DAGs run a day's work every minute. A load generator fetches
the quickstart Join from both fetch servers throughout.

Then the kills stop, the victims come back, and after a settle period the checks run:
1. no task stuck: every run whose day ended before the settle period began has finished, and
   finished successfully; nothing is running on a dead worker;
2. every partition is whole: each manifest's files exist and `table export` reads exactly the rows
   the manifest counts;
3. every served batch is whole: the Redis hash of each served version holds exactly the rows of
   its upload partition (plus the serving-info entry);
4. memory is flat: the survivor's RSS over the last quarter of the chaos phase is within 1.5x of
   its RSS over the second quarter (the first is warm-up).
"""

import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = os.environ["CHRONOFLOW_BIN"]
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "fixtures/chronon/quickstart"
RESULTS = ROOT / "bench/chaos/results/chaos.jsonl"

SPEED = int(os.environ.get("CHAOS_SPEED", 1440))  # a simulated day per wall minute
FIRST_DS = dt.date(2023, 11, 24)  # the first day the daily DAGs run for
LAST_DS = dt.date(2023, 11, 30)  # the data ends here
CHAOS_SECONDS = int(os.environ.get("CHAOS_SECONDS", 360))
SETTLE_SECONDS = int(os.environ.get("SETTLE_SECONDS", 150))
SEED = int(os.environ.get("CHAOS_SEED", int(time.time())))
JOIN = "quickstart/training_set.v2"
GROUP_BYS = ["purchases", "returns", "users"]

rng = random.Random(SEED)


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ds_range(a, b):
    d = a
    while d <= b:
        yield d
        d += dt.timedelta(days=1)


def ms_of(d):
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


def with_db(url, name):
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


class Env:
    def __init__(self):
        self.work = Path(tempfile.mkdtemp(prefix="chronoflow-chaos-"))
        self.repo = self.work / "repo"
        self.database_url = with_db(os.environ["DATABASE_URL"], "chronoflow_chaos")
        self.redis_db = 7
        self.kv = f"{os.environ['REDIS_URL'].rstrip('/')}/{self.redis_db}"
        self.api_port = 18686
        self.fetch_port = 19000
        wall = int(time.time() * 1000)
        self.clock = f"start={FIRST_DS.isoformat()},wall_ms={wall},speed={SPEED}"
        self.env = dict(
            os.environ,
            CHRONOFLOW_WAREHOUSE=str(self.work / "warehouse"),
            CHRONOFLOW_DATABASE_URL=self.database_url,
            CHRONOFLOW_HOME=str(self.work / "home"),
            CHRONOFLOW_KV=self.kv,
            RUST_LOG=os.environ.get("RUST_LOG", "warn"),
        )
        self.sim_env = dict(self.env, CHRONOFLOW_CLOCK=self.clock)

    def cf(self, *args, check=True, capture=True, sim=False):
        out = subprocess.run(
            [BIN, *args],
            env=self.sim_env if sim else self.env,
            cwd=self.work,
            text=True,
            capture_output=capture,
        )
        if check and out.returncode != 0:
            raise SystemExit(f"chronoflow {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
        return out

    def psql(self, sql, db=None):
        out = subprocess.run(
            ["psql", db or self.database_url, "-At", "-F", "\t", "-c", sql],
            text=True,
            capture_output=True,
            check=True,
        )
        return [line.split("\t") for line in out.stdout.splitlines() if line]


def setup(env):
    log(f"work dir {env.work}, seed {SEED}, speed {SPEED}x")
    admin = with_db(os.environ["DATABASE_URL"], "postgres")
    subprocess.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS chronoflow_chaos WITH (FORCE)"], check=True)
    subprocess.run(["psql", admin, "-qc", "CREATE DATABASE chronoflow_chaos"], check=True)
    subprocess.run(["redis-cli", "-n", str(env.redis_db), "FLUSHDB"], check=True, capture_output=True)

    shutil.copytree(QUICKSTART / "compiled", env.repo / "compiled")
    # Every daily DAG catches up from FIRST_DS; a dead worker is noticed after 15 wall seconds.
    plan = json.loads(env.cf("plan", "--repo", str(env.repo), "--format", "json").stdout)
    # Streaming keep-alive DAGs need a command executor (a stream of their own): not run here.
    daily = [d["dag_id"] for d in plan["dags"]
             if d["schedule"]["kind"] != "manual" and "_streaming_" not in d["dag_id"]]
    toml = [
        "heartbeat_interval_seconds = 1",
        f"heartbeat_timeout_seconds = {15 * SPEED}",
        f"retry_max_delay_seconds = {10 * SPEED}",
    ]
    for dag in daily:
        # Kills come far more often than in life, and a try killed with its worker counts as a
        # try (as in Airflow): enough retries that only a real failure exhausts them.
        toml += [f'[dags."{dag}"]', "catchup = true", f'start_date = "{FIRST_DS.isoformat()}"',
                 "retries = 10"]
    (env.repo / "chronoflow.toml").write_text("\n".join(toml) + "\n")

    # The quickstart's data, with a users snapshot and checkouts for every day the DAGs run.
    data = env.work / "data"
    data.mkdir()
    for t in ["purchases", "returns"]:
        env.cf("table", "import", f"data.{t}", str(QUICKSTART / f"data/{t}.csv"))
    users = (QUICKSTART / "data/users.csv").read_text().splitlines()
    checkouts = (QUICKSTART / "data/checkouts.csv").read_text().splitlines()
    with open(data / "users.csv", "w") as f, open(data / "checkouts.csv", "w") as g:
        f.write(users[0] + "\n")
        g.write(checkouts[0] + "\n")
        for d in ds_range(dt.date(2023, 11, 1), LAST_DS):
            for line in users[1:]:
                f.write(d.isoformat() + line[line.index(",") :] + "\n")
            if d >= FIRST_DS - dt.timedelta(days=1):
                shift = (d - LAST_DS).days * 86_400_000
                for line in checkouts[1:]:
                    ds, ts, rest = line.split(",", 2)
                    g.write(f"{d.isoformat()},{int(ts) + shift},{rest}\n")
    env.cf("table", "import", "data.users", str(data / "users.csv"))
    env.cf("table", "import", "data.checkouts", str(data / "checkouts.csv"))
    # The GroupBys' history before the first simulated day, as a one-off backfill would land it.
    before = (FIRST_DS - dt.timedelta(days=1)).isoformat()
    for gb in GROUP_BYS:
        conf = f"compiled/production/group_bys/quickstart/{gb}.v1"
        env.cf("run", "--mode", "backfill", "--repo", str(env.repo), "--conf", conf,
               "--start-ds", "2023-11-01", "--end-ds", before)
    env.cf("run", "--mode", "metadata-upload", "--repo", str(env.repo), "--conf",
           "compiled/production/joins/quickstart/training_set.v2")
    env.cf("dags", "sync", "--repo", str(env.repo), sim=True)
    env.cf("dags", "pause", "--all", sim=True)
    for dag in daily:
        env.cf("dags", "unpause", dag, sim=True)
    return daily


class Proc:
    """A chronoflow process that the chaos loop may kill and restart."""

    def __init__(self, env, name, args, victim=True):
        self.env, self.name, self.args, self.victim = env, name, args, victim
        self.proc = None
        self.kills = 0
        self.starts = 0
        self.log = open(env.work / f"{name}.log", "ab")

    def start(self):
        self.proc = subprocess.Popen([BIN, *self.args], env=self.env.sim_env, cwd=self.env.work,
                                     stdout=self.log, stderr=self.log)
        self.starts += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.kills += 1

    def rss_kb(self):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            return None


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


class Load(threading.Thread):
    """Fetches the Join for a random user from both fetch servers, ~10 requests a second."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = ports
        self.stop = False
        self.counts = {}

    def run(self):
        while not self.stop:
            port = rng.choice(self.ports)
            body = json.dumps([{"user_id": rng.randrange(100)}]).encode()
            url = f"http://127.0.0.1:{port}/v1/fetch/join/{JOIN}"
            try:
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    results = json.loads(r.read())["results"]
                    ok = all(x.get("status") == "Success" for x in results)
                    key = f"{port}:ok" if ok else f"{port}:not_success"
            except urllib.error.HTTPError as e:
                key = f"{port}:http_{e.code}"
            except (urllib.error.URLError, OSError, ValueError):
                key = f"{port}:down"
            self.counts[key] = self.counts.get(key, 0) + 1
            time.sleep(0.1)


def chaos(env, survivor, victims, uploads):
    rss = []
    kills = {}
    t0 = time.time()
    next_kill = t0 + rng.uniform(3, 10)
    while time.time() - t0 < CHAOS_SECONDS:
        rss.append((time.time() - t0, survivor.rss_kb()))
        if not survivor.alive():
            raise SystemExit(f"the survivor died: see {survivor.log.name}")
        for p in victims:
            if not p.alive() and rng.random() < 0.5:
                p.start()
        # An upload-to-kv by hand now and then, killed half the time at a random moment.
        if rng.random() < 0.05:
            gb = rng.choice(GROUP_BYS)
            day = rng.choice(list(ds_range(dt.date(2023, 11, 1), FIRST_DS - dt.timedelta(days=1))))
            conf = f"compiled/production/group_bys/quickstart/{gb}.v1"
            up = Proc(env, f"upload-{len(uploads)}",
                      ["run", "--mode", "upload-to-kv", "--repo", str(env.repo), "--conf", conf,
                       "--ds", day.isoformat()])
            up.start()
            uploads.append(up)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 1.5))
                up.kill()
                kills["upload-to-kv"] = kills.get("upload-to-kv", 0) + 1
        # A worker caught running a try is killed now and then (a kill between tries tests little).
        busy = {int(pid) for (pid,) in env.psql(
            "SELECT DISTINCT w.pid FROM task_instances t JOIN workers w ON w.worker_id = t.worker_id "
            "WHERE t.state = 'running' AND t.is_sensor = 0")}
        busy_victims = [v for v in victims if v.alive() and v.proc.pid in busy]
        if busy_victims and rng.random() < 0.3:
            rng.choice(busy_victims).kill()
            kills["worker_mid_try"] = kills.get("worker_mid_try", 0) + 1
        if time.time() >= next_kill:
            p = rng.choice([v for v in victims if v.alive()] or victims)
            sig = signal.SIGKILL if rng.random() < 0.8 else signal.SIGTERM
            p.kill(sig)
            kind = p.name.rstrip("0123456789")
            kills[kind] = kills.get(kind, 0) + 1
            next_kill = time.time() + rng.uniform(3, 12)
        time.sleep(0.5)
    return rss, kills


def check_tasks(env, settle_from_ms):
    problems = []
    rows = env.psql(
        "SELECT dag_id, run_id, state, logical_ms FROM dag_runs ORDER BY dag_id, logical_ms")
    finished = [r for r in rows if int(r[3]) + 86_400_000 <= settle_from_ms]
    for dag_id, run_id, state, _ in finished:
        if state != "success":
            tasks = env.psql(
                f"SELECT task_id, state, try_number FROM task_instances WHERE dag_id = '{dag_id}' "
                f"AND run_id = '{run_id}' AND state <> 'success'")
            problems.append(f"run {dag_id} {run_id} is {state}: {tasks}")
    dead_running = env.psql(
        "SELECT t.dag_id, t.run_id, t.task_id, t.worker_id FROM task_instances t "
        "LEFT JOIN workers w ON w.worker_id = t.worker_id "
        "WHERE t.state = 'running' AND t.is_sensor = 0 "
        "AND (w.worker_id IS NULL OR w.stopped_ms IS NOT NULL)")
    problems += [f"task running on a dead worker: {r}" for r in dead_running]
    tries = env.psql("SELECT state, count(*) FROM task_tries GROUP BY state")
    errors = env.psql(
        "SELECT left(error, 120), count(*) FROM task_tries WHERE state = 'failed' "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 5")
    return problems, {"runs": len(rows), "runs_checked": len(finished),
                      "tries": {k: int(v) for k, v in tries},
                      "failed_try_errors": {k: int(v) for k, v in errors}}


def check_partitions(env):
    problems, checked = [], 0
    warehouse = env.work / "warehouse"
    for manifest in sorted(warehouse.rglob("_manifest.json")):
        part = manifest.parent
        table_dir = part.parent
        m = json.loads(manifest.read_text())
        files = [f["path"] if isinstance(f, dict) else f for f in m.get("files", [])]
        for f in files:
            if not (part / Path(f).name).exists():
                problems.append(f"{manifest}: lists {f}, which is missing")
        rows = m.get("rows")
        table = table_dir.relative_to(warehouse).as_posix().replace("/", ".")
        ds = part.name.split("=", 1)[1]
        out = env.cf("table", "export", table, "--ds", ds, "--format", "json", check=False)
        if out.returncode != 0:
            problems.append(f"{table} ds={ds} does not read: {out.stderr.strip()[:300]}")
        elif rows is not None and len(out.stdout.splitlines()) != rows:
            problems.append(f"{table} ds={ds}: manifest says {rows} rows, read {len(out.stdout.splitlines())}")
        checked += 1
    return problems, checked


def redis(env, *args):
    out = subprocess.run(["redis-cli", "-n", str(env.redis_db), *args], text=True,
                         capture_output=True, check=True)
    return out.stdout.strip()


def check_batches(env):
    problems, served, leftover = [], 0, 0
    pointers = [k for k in redis(env, "--scan", "--pattern", "*:active").splitlines() if k]
    for pointer in pointers:
        base = pointer[: -len(":active")]
        version = redis(env, "GET", pointer)
        entries = int(redis(env, "HLEN", f"{base}:v:{version}"))
        dataset = base.split(":", 1)[1]
        served += 1
        others = [k for k in redis(env, "--scan", "--pattern", f"{base}:v:*").splitlines()
                  if k and k != f"{base}:v:{version}"]
        leftover += len(others)
        # The batch dataset of GroupBy `quickstart/<gb>.v1` is `QUICKSTART_<GB>_V1_BATCH`; its
        # upload partition is `<output table>_upload/ds=<version>` (found in the warehouse).
        gb = next((g for g in GROUP_BYS if dataset == f"QUICKSTART_{g.upper()}_V1_BATCH"), None)
        if gb is None:
            continue
        uploads = [p for p in (env.work / "warehouse").glob(f"*/*{gb}_v1_upload")]
        if len(uploads) != 1:
            problems.append(f"served {dataset}: upload table of {gb} not found ({uploads})")
            continue
        table = uploads[0].relative_to(env.work / "warehouse").as_posix().replace("/", ".")
        ds = version.split("#")[0]
        out = env.cf("table", "export", table, "--ds", ds, "--format", "json", check=False)
        if out.returncode != 0:
            problems.append(f"served {dataset}@{version}: its upload partition does not read: {out.stderr[:200]}")
            continue
        rows = len(out.stdout.splitlines())
        if entries not in (rows, rows + 1):
            problems.append(f"served {dataset}@{version} holds {entries} entries, its upload partition {rows} rows")
    return problems, {"served_batches": served, "unserved_versions_left": leftover}


def main():
    env = Env()
    daily = setup(env)
    log(f"daily DAGs: {', '.join(daily)}")
    survivor = Proc(env, "standalone",
                    ["standalone", "--repo", str(env.repo), "--listen", f"127.0.0.1:{env.api_port}",
                     "--tick-ms", "200", "--slots", "1", "--replan-seconds", "10"], victim=False)
    victims = [
        Proc(env, "scheduler2", ["scheduler", "--repo", str(env.repo), "--tick-ms", "200"]),
        Proc(env, "worker1", ["worker", "--repo", str(env.repo), "--slots", "2"]),
        Proc(env, "worker2", ["worker", "--repo", str(env.repo), "--slots", "2"]),
        Proc(env, "fetcher", ["serve", "--listen", f"127.0.0.1:{env.fetch_port}"]),
    ]
    uploads = []
    survivor.start()
    for p in victims:
        p.start()
    if not wait_http(f"http://127.0.0.1:{env.api_port}/api/v1/health"):
        raise SystemExit(f"standalone did not start: see {survivor.log.name}")
    load = Load([env.api_port, env.fetch_port])
    load.start()
    log(f"chaos for {CHAOS_SECONDS} s")
    rss, kills = chaos(env, survivor, victims, uploads)
    log(f"kills: {kills}; settling for {SETTLE_SECONDS} s")
    for p in victims:
        if not p.alive():
            p.start()
    for up in uploads:
        if up.alive():
            up.proc.wait()
    settle_from_ms = ms_of(FIRST_DS) + int((time.time() * 1000 - int(env.clock.split("wall_ms=")[1].split(",")[0])) * SPEED)
    time.sleep(SETTLE_SECONDS)
    load.stop = True
    load.join()
    # Freeze: stop everything gracefully, then check.
    for p in [*victims, survivor]:
        p.kill(signal.SIGTERM)

    task_problems, task_stats = check_tasks(env, settle_from_ms - 86_400_000)
    part_problems, partitions = check_partitions(env)
    batch_problems, batch_stats = check_batches(env)
    samples = [kb for _, kb in rss if kb]
    q = max(len(samples) // 4, 1)
    second, last = statistics.median(samples[q : 2 * q]), statistics.median(samples[-q:])
    memory_ok = last <= 1.5 * second
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seed": SEED,
        "speed": SPEED,
        "chaos_seconds": CHAOS_SECONDS,
        "settle_seconds": SETTLE_SECONDS,
        "kills": kills,
        "restarts": {p.name: p.starts - 1 for p in victims},
        "hand_uploads": len(uploads),
        **task_stats,
        "partitions_checked": partitions,
        **batch_stats,
        "fetches": load.counts,
        "survivor_rss_mb": {"q2_median": round(second / 1024, 1), "q4_median": round(last / 1024, 1),
                            "max": round(max(samples) / 1024, 1)},
        "problems": task_problems + part_problems + batch_problems
        + ([] if memory_ok else [f"memory grew: {second} kB -> {last} kB"]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    if result["problems"]:
        log(f"FAILED: {len(result['problems'])} problems (logs in {env.work})")
        return 1
    log("passed")
    if not os.environ.get("CHAOS_KEEP"):
        shutil.rmtree(env.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
