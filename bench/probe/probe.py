#!/usr/bin/env python3
"""Hostile inputs, black box: the real binary fed what a careless user or a hostile network sends.

Every case runs the binary (or talks HTTP to it) and is classed by what came back:

  error-clean  a non-zero exit with a message (or an HTTP 4xx), no panic
  ok           it worked (exit 0, HTTP 2xx/3xx)
  PANIC        "panicked at" / exit code 101 / killed by a signal / a connection closed unanswered
  HANG         no answer within the case's timeout
  WRONG        an answer, but the wrong one (a 5xx for bad input, a result a check refutes,
               or success where the input must be refused)

Each case names what it expects: "error" (must be refused cleanly), "ok", or "any" (either is
fine; only a panic, hang or wrong result fails). Exit status 1 on any PANIC, HANG or WRONG.

  bench/probe.sh [path/to/chronoflow]        (see bench/probe.sh)
  PROBE_ONLY=http bench/probe.sh             (one area: cli, config, data, http, state)
"""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

BIN = os.environ.get("CHRONOFLOW_BIN") or (sys.argv[1] if len(sys.argv) > 1 else "target/debug/chronoflow")
BIN = os.path.abspath(BIN)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QS = os.path.join(ROOT, "fixtures", "chronon", "quickstart")
ONLY = os.environ.get("PROBE_ONLY")

RESULTS = []  # (area, case, expect, outcome, detail)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    """One temporary home: warehouse, state store, KV store, logs."""

    def __init__(self, root):
        self.root = root
        self.env = dict(os.environ)
        self.env.update(
            CHRONOFLOW_WAREHOUSE=f"{root}/wh",
            CHRONOFLOW_DATABASE_URL=f"sqlite://{root}/state.db",
            CHRONOFLOW_HOME=root,
            CHRONOFLOW_KV=f"{root}/kv",
            RUST_BACKTRACE="0",
        )
        self.env.pop("CHRONOFLOW_CONFIG", None)

    def run(self, args, timeout=30, stdin=None, cwd=None):
        t0 = time.time()
        try:
            p = subprocess.run(
                [BIN, *args],
                env=self.env,
                cwd=cwd or self.root,
                input=stdin,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None, b"", b"", time.time() - t0
        return p.returncode, p.stdout, p.stderr, time.time() - t0


def classify_cli(rc, out, err):
    if rc is None:
        return "HANG"
    if rc == 101 or rc < 0:
        return "PANIC"
    if b"panicked at" in err and not (rc != 0 and b"\nerror: " in b"\n" + err):
        # A panic a library contained (the engine turns one inside DataFusion into an error)
        # still prints its message; it counts as a panic only if no clean error followed.
        return "PANIC"
    return "ok" if rc == 0 else "error-clean"


def record(area, case, expect, outcome, detail=""):
    # A clean answer of the other kind than expected: success where refusal was due is wrong;
    # a refusal where success was due is wrong too (a regression, not hardening).
    if outcome == "ok" and expect == "error":
        outcome = "WRONG"
        detail = "accepted: " + detail
    elif outcome == "error-clean" and expect == "ok":
        outcome = "WRONG"
        detail = "refused: " + detail
    RESULTS.append((area, case, expect, outcome, detail))


def short(b, n=160):
    text = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
    text = " ".join(text.split())
    return text[:n]


def cli(env, area, case, expect, args, timeout=30, check=None, stdin=None, cwd=None):
    """Runs one CLI case; `check(rc, out, err)` returns a reason when the answer is wrong."""
    rc, out, err, _ = env.run(args, timeout=timeout, stdin=stdin, cwd=cwd)
    outcome = classify_cli(rc, out, err)
    detail = short(err) or short(out)
    if outcome in ("ok", "error-clean") and check:
        why = check(rc, out, err)
        if why:
            outcome, detail = "WRONG", why
    if outcome == "HANG":
        detail = f"no exit within {timeout}s"
    record(area, case, expect, outcome, detail)
    return rc, out, err


# ---------------------------------------------------------------- setup


def setup(env):
    for t in ("purchases", "returns", "users", "checkouts"):
        rc, _, err, _ = env.run(["table", "import", f"data.{t}", f"{QS}/data/{t}.csv"])
        assert rc == 0, err
    for gb in ("purchases", "returns", "users"):
        conf = f"compiled/production/group_bys/quickstart/{gb}.v1"
        for args in (
            ["run", "--mode", "backfill", "--conf", conf, "--start-ds", "2023-11-27", "--end-ds", "2023-11-29"],
            ["run", "--mode", "upload", "--conf", conf, "--ds", "2023-11-29"],
            ["run", "--mode", "upload-to-kv", "--conf", conf, "--ds", "2023-11-29"],
        ):
            rc, _, err, _ = env.run([*args, "--repo", QS], timeout=120)
            assert rc == 0, (args, err)
    rc, _, err, _ = env.run(
        ["run", "--mode", "metadata-upload", "--repo", QS, "--conf", "compiled/production/joins/quickstart/training_set.v2"]
    )
    assert rc == 0, err
    rc, _, err, _ = env.run(["dags", "sync", "--repo", QS])
    assert rc == 0, err


def copy_repo(dst):
    shutil.copytree(QS, dst, ignore=shutil.ignore_patterns("data"))
    return dst


# ---------------------------------------------------------------- CLI


def cli_cases(env):
    a = "cli"
    csv = f"{QS}/data/users.csv"
    for name in ["../../etc.x", "data.x/y", "data./", "/abs.x", "data..x", "data.é", ".x", "x.", "",
                 "data." + "a" * 5000, "data.x\x7f", "data.con", "data.x y"]:
        expect = "any" if name in ("data.con",) else "error"
        cli(env, a, f"table import name {name[:30]!r}", expect, ["table", "import", name, csv],
            check=lambda rc, o, e: None if not os.path.exists(f"{env.root}/etc.x") else "wrote outside the warehouse")
    for ds in ["2023-02-30", "2023-13-01", "+2023-01-01", " 2023-11-29", "2023-11-29 ", "2023-1-01",
               "0000-00-00", "-001-01-01", "２０２３-11-29", "2023-11-29\n", "99999-01-01", "2023-11-29T00:00"]:
        cli(env, a, f"export --ds {ds!r}", "error", ["table", "export", "data.users", "--format", "csv", "--ds", ds])
    for ds in ["2023-02-30", "2023-13-01", "+2023-01-01", "1899-12-31", "3000-01-01", "0001-01-01"]:
        cli(env, a, f"run backfill --ds {ds}", "error",
            ["run", "--repo", QS, "--conf", "compiled/production/group_bys/quickstart/purchases.v1", "--ds", ds])
    conf = "compiled/production/group_bys/quickstart/purchases.v1"
    cli(env, a, "run start after end", "error", ["run", "--repo", QS, "--conf", conf, "--start-ds", "2023-11-30", "--end-ds", "2023-11-01"])
    cli(env, a, "run --ds with --start-ds", "error", ["run", "--repo", QS, "--conf", conf, "--ds", "2023-11-30", "--start-ds", "2023-11-01"])
    cli(env, a, "run --step-days -1", "error", ["run", "--repo", QS, "--conf", conf, "--ds", "2023-11-30", "--step-days", "-1"])
    cli(env, a, "run --step-days u64 max", "any", ["run", "--repo", QS, "--conf", conf, "--ds", "2023-11-28", "--step-days", "18446744073709551615"])
    cli(env, a, "run --parallelism huge", "any", ["run", "--repo", QS, "--conf", conf, "--ds", "2023-11-28", "--parallelism", "4294967295"])
    for c in ["../../../../etc/passwd", "/etc/passwd", "", "compiled", "compiled/production/group_bys/quickstart/nope.v1",
              "compiled/production/group_bys/quickstart/purchases.v1/", "compiled/teams.json"]:
        cli(env, a, f"run --conf {c!r}", "error", ["run", "--repo", QS, "--conf", c, "--ds", "2023-11-28"])
    cli(env, a, "run upload-to-kv without an upload", "error", ["run", "--mode", "upload-to-kv", "--repo", QS, "--conf", conf, "--ds", "2023-11-01"])
    cli(env, a, "run upload of a Join", "error", ["run", "--mode", "upload", "--repo", QS, "--conf", "compiled/production/joins/quickstart/training_set.v2", "--ds", "2023-11-28"])
    cli(env, a, "run streaming without --replay-table", "error", ["run", "--mode", "streaming", "--repo", QS, "--conf", "compiled/production/group_bys/quickstart/returns.v1"])
    cli(env, a, "run streaming replay-table traversal", "error", ["run", "--mode", "streaming", "--repo", QS, "--conf", "compiled/production/group_bys/quickstart/returns.v1", "--replay-table", "../x.y", "--since", "2023-11-29"])
    cli(env, a, "run streaming of a SNAPSHOT GroupBy", "error", ["run", "--mode", "streaming", "--repo", QS, "--conf", "compiled/production/group_bys/quickstart/users.v1", "--replay-table", "data.users", "--since", "2023-11-29"])
    cli(env, a, "check --repo missing", "error", ["check", "--repo", "/nonexistent"])
    cli(env, a, "check --repo a file", "error", ["check", "--repo", csv])
    cli(env, a, "check --format yaml", "error", ["check", "--repo", QS, "--format", "yaml"])
    cli(env, a, "plan --dag unknown", "error", ["plan", "--repo", QS, "--dag", "nope"])
    cli(env, a, "plan -o a directory", "error", ["plan", "--repo", QS, "-o", "/tmp"])
    cli(env, a, "plan --dag unicode", "error", ["plan", "--repo", QS, "--dag", "ü" * 1000])
    for dag, s, e in [("chronon_join_backfill", "2023-11-30", "2023-11-01"), ("nope", "2023-11-01", "2023-11-02"),
                      ("chronon_join_backfill", "0001-01-01", "9999-12-31"), ("", "2023-11-01", "2023-11-01"),
                      ("../../x", "2023-11-01", "2023-11-01")]:
        cli(env, a, f"dags trigger {dag[:20]!r} {s}..{e}", "error", ["dags", "trigger", dag, "--start-ds", s, "--end-ds", e])
    cli(env, a, "dags backfill of a backfill-only DAG far range", "error",
        ["dags", "backfill", "chronon_gb_batch_quickstart", "--start-ds", "1900-01-01", "--end-ds", "2999-12-31"])
    cli(env, a, "dags pause unknown", "error", ["dags", "pause", "nope"])
    cli(env, a, "dags pause nothing", "error", ["dags", "pause"])
    cli(env, a, "runs list --limit -1", "error", ["runs", "list", "--limit", "-1"])
    cli(env, a, "runs list --limit huge", "any", ["runs", "list", "--limit", "9223372036854775807"])
    cli(env, a, "runs list --limit 0", "any", ["runs", "list", "--limit", "0"])
    cli(env, a, "runs list --state-filter nope", "error", ["runs", "list", "--state-filter", "nope"])
    cli(env, a, "tasks list unknown run", "error", ["tasks", "list", "chronon_join_backfill", "nope"])
    cli(env, a, "tasks logs traversal", "error", ["tasks", "logs", "../../..", "..", "etc", "--try", "1"])
    cli(env, a, "tasks logs --try -1", "error", ["tasks", "logs", "chronon_join_backfill", "x", "y", "--try", "-1"])
    cli(env, a, "tasks logs --try huge", "error", ["tasks", "logs", "chronon_join_backfill", "x", "y", "--try", "99999999999999999999"])
    cli(env, a, "tasks clear unknown", "error", ["tasks", "clear", "chronon_join_backfill", "nope", "nope"])
    cli(env, a, "tokens create bad role", "error", ["tokens", "create", "--name", "x", "--team", "t", "--role", "god"])
    cli(env, a, "tokens create empty name", "any", ["tokens", "create", "--name", "", "--team", "t", "--role", "viewer"])
    cli(env, a, "tokens create huge name", "any", ["tokens", "create", "--name", "n" * 100000, "--team", "t", "--role", "viewer"])
    cli(env, a, "tokens revoke unknown", "error", ["tokens", "revoke", "ffffffffffff"])
    cli(env, a, "tokens revoke empty", "error", ["tokens", "revoke", ""])
    cli(env, a, "tokens revoke %", "error", ["tokens", "revoke", "%"])
    for keys in ["", "{", "[]", "null", "5", '{"user_id": null}', '{"user_id": 1e400}', '{"user_id": "5"}',
                 '{"user_id": [1]}', '{"user_id": {"a": 1}}', '[' * 100000, '{"user_id": 5, "user_id": 6}',
                 '{"other": 5}', '{"user_id": -9223372036854775809}', '{"user_id": 18446744073709551616}']:
        cli(env, a, f"fetch -k {keys[:24]!r}", "any", ["fetch", "-n", "quickstart/training_set.v2", "-k", keys, "--at-millis", "1701374234059"])
    for at in ["-1", "0", "9223372036854775807", "-9223372036854775808", "99999999999999999999", "1e12", ""]:
        cli(env, a, f"fetch --at-millis {at}", "any", ["fetch", "-n", "quickstart/training_set.v2", "-k", '{"user_id": 5}', "--at-millis", at])
    for n in ["", "../../x", "quickstart/../../x", "quickstart.purchases.v1", "a" * 10000]:
        cli(env, a, f"fetch -n {n[:20]!r} (group-by)", "any", ["fetch", "-t", "group-by", "-n", n, "-k", '{"user_id": 5}'])
    # A fetch at a time before the end of the served batch's day (2023-11-29): an error, or the
    # value the raw events give at that time, never one that counts later events.
    at = 1_701_000_000_000  # 2023-11-26T12:00:00Z
    rows = [r for r in csv_rows(f"{QS}/data/purchases.csv") if r["user_id"] == "5"]
    want = sum(int(r["purchase_price"]) for r in rows if at - 30 * 86_400_000 <= int(r["ts"]) < at) or None

    def point_in_time(rc, out, err):
        if rc != 0:
            return None
        got = json.loads(out)["features"]["purchase_price_sum_30d"]
        return None if got == want else f"sum_30d {got} at 2023-11-26T12:00Z (events then give {want}): counts events after the fetch time"

    cli(env, a, "fetch before the served batch's day", "any",
        ["fetch", "-t", "group-by", "-n", "quickstart.purchases.v1", "-k", '{"user_id": 5}', "--at-millis", str(at)], check=point_in_time)
    cli(env, a, "serve --listen garbage", "error", ["serve", "--listen", "not-an-addr"], timeout=10)
    cli(env, a, "serve --listen port 99999", "error", ["serve", "--listen", "127.0.0.1:99999"], timeout=10)
    # standalone --until-idle ends once nothing is due: with every DAG paused, at once.
    env.run(["dags", "pause", "--all"])
    idle = ["standalone", "--repo", QS, "--until-idle", "--no-api"]
    cli(env, a, "standalone --tick-ms 0", "any", [*idle, "--tick-ms", "0"], timeout=60)
    cli(env, a, "standalone --tick-ms u64 max", "any", [*idle, "--tick-ms", "18446744073709551615"], timeout=60)
    cli(env, a, "standalone --replan-seconds 0", "any", [*idle, "--replan-seconds", "0"], timeout=60)
    cli(env, a, "standalone --slots huge", "any", [*idle, "--slots", "4294967295"], timeout=60)
    cli(env, a, "standalone --quality-ratio NaN", "error", [*idle, "--quality-ratio", "NaN"], timeout=60)
    cli(env, a, "standalone --quality-ratio 0", "error", [*idle, "--quality-ratio", "0"], timeout=60)
    cli(env, a, "standalone --database-url garbage", "error", [*idle, "--database-url", "mysql://x"], timeout=30)
    cli(env, a, "standalone --database-url sqlite dir", "error", [*idle, "--database-url", "sqlite:///"], timeout=30)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli(env, a, "standalone --listen on a taken port", "error", ["standalone", "--repo", QS, "--until-idle", "--listen", f"127.0.0.1:{port}"], timeout=30)
        cli(env, a, "serve --listen on a taken port", "error", ["serve", "--listen", f"127.0.0.1:{port}"], timeout=30)
    # A specs file that cannot be read is logged and the last good DAGs kept (as for a repo that
    # stops planning while the scheduler runs), so these may start.
    cli(env, a, "standalone --specs missing", "any", [*idle, "--specs", "/nonexistent.json"], timeout=30)
    write(f"{env.root}/specs.json", "[" * 10000)
    cli(env, a, "standalone --specs deep JSON", "any", [*idle, "--specs", f"{env.root}/specs.json"], timeout=30)
    tomls = {
        "broken toml": "[executors\nx=",
        "heartbeat interval 0": "heartbeat_interval_seconds = 0\n",
        "heartbeat timeout u64 max": "heartbeat_timeout_seconds = 18446744073709551615\n",
        "negative number": "heartbeat_timeout_seconds = -1\n",
        "unknown default executor": 'default_executor = "nope"\n',
        "dag override start_date 2023-02-30": '[dags.chronon_join_backfill]\nstart_date = "2023-02-30"\n',
        "dag override concurrency 0": "[dags.chronon_join_backfill]\nconcurrency = 0\nmax_active_runs = 0\n",
        "dag override for an unknown DAG": "[dags.nope]\nretries = 4294967295\nretry_delay_seconds = 18446744073709551615\n",
        "alert webhook not a URL": 'alert_webhook = "not a url"\n',
        "team concurrency 0": "[teams.quickstart]\nconcurrency = 0\n",
    }
    for case, text in tomls.items():
        path = f"{env.root}/{case.replace(' ', '_')}.toml"
        write(path, text)
        cli(env, a, f"standalone --config {case}", "any", [*idle, "--config", path], timeout=60)


# ---------------------------------------------------------------- configs


def csv_rows(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def config_cases(env):
    a = "config"
    base = json.load(open(f"{QS}/compiled/production/group_bys/quickstart/purchases.v1"))
    gb_path = "compiled/production/group_bys/quickstart/purchases.v1"
    n = [0]

    def repo_with(data, path=gb_path):
        n[0] += 1
        r = copy_repo(f"{env.root}/repos/r{n[0]}")
        write(f"{r}/{path}", data)
        return r

    def gb(mutate):
        c = json.loads(json.dumps(base))
        mutate(c)
        return json.dumps(c)

    def check_and_run(case, data, expect_check="any", run=True, path=gb_path, ds="2023-11-29", timeout=60):
        r = repo_with(data, path)
        cli(env, a, f"check: {case}", expect_check, ["check", "--repo", r], timeout=timeout)
        cli(env, a, f"plan: {case}", expect_check, ["plan", "--repo", r, "--format", "json"], timeout=timeout)
        if run:
            cli(env, a, f"backfill: {case}", "any", ["run", "--repo", r, "--conf", path, "--ds", ds, "--force"], timeout=timeout)

    # JSON-level damage.
    check_and_run("10k nested arrays", "[" * 10000 + "]" * 10000, "error", run=False)
    check_and_run("100k nested objects", '{"a":' * 100000 + "1" + "}" * 100000, "error", run=False)
    check_and_run("BOM", b"\xef\xbb\xbf" + json.dumps(base).encode(), "any")
    check_and_run("non-UTF-8 bytes", json.dumps(base).encode().replace(b"user_id", b"user\xff_id", 1), "error", run=False)
    check_and_run("duplicate keys", json.dumps(base)[:-1] + ', "keyColumns": ["purchase_price"]}', "any")
    check_and_run("empty file", "", "error", run=False)
    check_and_run("only null", "null", "error", run=False)
    check_and_run("huge number", gb(lambda c: c["aggregations"][0]["windows"][0].update(length=10**30)), "error")
    check_and_run("NaN string window", gb(lambda c: c["aggregations"][0]["windows"][0].update(length="NaN")), "error")
    # Windows.
    for length, unit in [(0, 1), (-1, 1), (2**31 - 1, 1), (2**31, 1), (2**63 - 1, 1), (1, 0), (25, 0), (-3, 0), (1, 7), (1, -1)]:
        check_and_run(f"window {length} unit {unit}", gb(lambda c: c["aggregations"][0].update(windows=[{"length": length, "timeUnit": unit}])), "any")
    # k for LAST_K (13 in ZL numbering? operations per dialect) and TOP_K / APPROX percentile.
    for op, argmap in [(13, {"k": "0"}), (13, {"k": "-1"}), (13, {"k": "99999999999999999999"}), (13, {"k": "2147483647"}),
                       (13, {"k": "abc"}), (13, {"k": ""}), (13, {}), (14, {"k": "1000000000"}),
                       (12, {"percentiles": "[-0.5, 1.5]"}), (12, {"percentiles": "[NaN]"}), (12, {"percentiles": "[]"}),
                       (12, {"percentiles": "[0.5"}), (12, {"k": "0"}), (12, {"k": "1000000000"}),
                       (99, {}), (-1, {})]:
        check_and_run(f"op {op} argMap {json.dumps(argmap)[:40]}",
                      gb(lambda c: c["aggregations"].__setitem__(3, {"inputColumn": "purchase_price", "operation": op, "argMap": argmap,
                                                                       "windows": [{"length": 3, "timeUnit": 1}]})), "any")
    for bucket in [[""], ["nope"], ["purchase_price"] * 2, ["user_id"]]:
        check_and_run(f"buckets {bucket}", gb(lambda c: c["aggregations"][0].update(buckets=bucket)), "any")
    # Selects, wheres, time column.
    sels = ["1; DROP TABLE x", "user_id; --", "(SELECT 1)", "sum(user_id) OVER ()", "'" * 3, "user_id +", "\u0000",
            "CAST(user_id AS BIGINT) / 0", "nope_column", "abs(-9223372036854775808)", "factorial(100)", "chr(-1)",
            "lpad('a', 9223372036854775807)", "substr('abc', -9223372036854775808, 10)", "to_timestamp(9223372036854775807)",
            "date_bin(interval '0 seconds', now())", "from_unixtime(-9223372036854775808)", "unix_timestamp('x', '%Q')",
            "date_format('2023-01-01', 'HH:mm')"]
    if os.environ.get("PROBE_HEAVY"):
        # More than 2 GB of text: DataFusion panicked on the string array's 32-bit offsets
        # (now an error naming the config). Needs about 15 GB of memory, so only on request.
        sels.append("repeat('x', 100000000)")
    for sel in sels:
        check_and_run(f"select {sel[:25]!r}", gb(lambda c: c["sources"][0]["events"]["query"]["selects"].update(purchase_price=sel)), "any")
    for where in ["nope_column > 1", "1=1; DROP TABLE x", "user_id IN (SELECT 1)", "", "ts > 'abc'", "user_id / 0 > 1"]:
        check_and_run(f"where {where[:25]!r}", gb(lambda c: c["sources"][0]["events"]["query"].update(wheres=[where])), "any")
    for tc in ["nope", "", "ts + 1", "purchase_price", "'2023-01-01'"]:
        check_and_run(f"timeColumn {tc!r}", gb(lambda c: c["sources"][0]["events"]["query"].update(timeColumn=tc)), "any")
    for table in ["../../etc.passwd", "data.purchases/../x", "data", "", "data.nope", "/abs.t"]:
        check_and_run(f"source table {table!r}", gb(lambda c: c["sources"][0]["events"].update(table=table)), "any")
    for ns in ["../..", "a/b", "", "default; DROP", "ü"]:
        check_and_run(f"outputNamespace {ns!r}", gb(lambda c: c["metaData"].update(outputNamespace=ns)), "any",
                      )
    for name in ["../../x", "quickstart/../../x", "", "a" * 5000, "quickstart.p.v1\u0000"]:
        check_and_run(f"metaData.name {name[:20]!r}", gb(lambda c: c["metaData"].update(name=name)), "any")
    for team in ["../../tmp", "a/b", "", "ü" * 10]:
        check_and_run(f"team {team!r}", gb(lambda c: c["metaData"].update(team=team)), "any", run=False)
    for sched in ["@every 0s", "* * * * * * * *", "0 0 31 2 *", "@yearly", "", "@hourly", "99 99 * * *"]:
        check_and_run(f"offlineSchedule {sched!r}", gb(lambda c: c["metaData"].update(offlineSchedule=sched)), "any", run=False)
    for dep in ["{not json", '{"name": "x", "spec": "../../etc/ds={{ ds }}"}', '{"name": "x", "spec": "data.purchases/ds={{ macros.ds_add(ds, -99999999999) }}"}',
                '{"name": "x", "spec": "data.purchases/ds={{ macros.ds_add(ds, 9223372036854775807) }}"}', '{"name": "x", "spec": ""}']:
        check_and_run(f"dependency {dep[:40]!r}", gb(lambda c: c["metaData"].update(dependencies=[dep])), "any", run=False)
    check_and_run("customJson broken", gb(lambda c: c["metaData"].update(customJson="{")), "any")
    check_and_run("customJson lag huge", gb(lambda c: c["metaData"].update(customJson='{"lag": 99999999999999}')), "any")
    check_and_run("customJson lag negative", gb(lambda c: c["metaData"].update(customJson='{"lag": -5}')), "any")
    # Joins.
    jp = "compiled/production/joins/quickstart/training_set.v2"
    jbase = json.load(open(f"{QS}/{jp}"))

    def jn(mutate):
        c = json.loads(json.dumps(jbase))
        mutate(c)
        return json.dumps(c)

    check_and_run("join: derivation syntax error", jn(lambda c: c.update(derivations=[{"name": "d", "expression": "1 +* ("}])), "any", path=jp, ds="2023-11-30")
    check_and_run("join: derivation unknown column", jn(lambda c: c.update(derivations=[{"name": "d", "expression": "nope + 1"}])), "any", path=jp, ds="2023-11-30")
    check_and_run("join: derivation injection", jn(lambda c: c.update(derivations=[{"name": "d", "expression": "1; DROP TABLE x"}])), "any", path=jp, ds="2023-11-30")
    check_and_run("join: derivation name traversal", jn(lambda c: c.update(derivations=[{"name": "../x", "expression": "1"}])), "any", path=jp, ds="2023-11-30")
    check_and_run("join: left table missing", jn(lambda c: c["left"]["events"].update(table="data.nope")), "any", path=jp, ds="2023-11-30")
    check_and_run("join: part prefix ../", jn(lambda c: c["joinParts"][0].update(prefix="../../")), "any", path=jp, ds="2023-11-30")
    check_and_run("join: groupBy is a string", jn(lambda c: c["joinParts"][0].update(groupBy="quickstart.purchases.v1")), "any", path=jp, ds="2023-11-30")
    # StagingQueries: the query text is SQL run as it is, with macros.
    sqp = "compiled/production/staging_queries/quickstart/sq.v1"
    evil = f"{env.root}/written-by-a-staging-query.csv"
    for case, query in [
        ("macros", "SELECT user_id, ds FROM data.users WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'"),
        ("ds_add of 1e11 days", "SELECT * FROM data.users WHERE ds = '{{ macros.ds_add(ds, 99999999999) }}'"),
        ("unterminated macro", "SELECT * FROM data.users WHERE ds = '{{ ds"),
        ("no ds column", "SELECT 1 AS x"),
        ("ds ../../x", "SELECT user_id, '../../x' AS ds FROM data.users"),
        ("ds null", "SELECT user_id, NULL AS ds FROM data.users"),
        ("two statements", "SELECT user_id, ds FROM data.users; DROP TABLE data.users"),
        ("table ../../etc", "SELECT * FROM `../../etc`.passwd"),
        ("CREATE TABLE", "CREATE TABLE x AS SELECT 1"),
        ("COPY TO a file", f"COPY (SELECT 1 AS x) TO '{evil}'"),
        ("CREATE EXTERNAL TABLE", "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'"),
        ("SET", "SET datafusion.execution.batch_size = 1"),
    ]:
        text = json.dumps({"metaData": {"name": "quickstart.sq.v1", "team": "quickstart", "outputNamespace": "default"},
                           "query": query, "startPartition": "2023-11-01"})
        check_and_run(f"staging query: {case}", text, "any", path=sqp)
        if os.path.exists(evil):
            record(a, f"staging query: {case} wrote no file", "error", "WRONG", f"wrote {evil}")
            os.remove(evil)
    # Repo shapes.
    r = copy_repo(f"{env.root}/repos/loop")
    os.symlink(f"{r}/compiled/production", f"{r}/compiled/production/group_bys/quickstart/loop")
    cli(env, a, "symlink loop in repo", "any", ["check", "--repo", r], timeout=60)
    r = copy_repo(f"{env.root}/repos/self")
    os.symlink("self", f"{r}/compiled/production/group_bys/quickstart/self")
    cli(env, a, "self symlink in repo", "any", ["check", "--repo", r], timeout=60)
    r = copy_repo(f"{env.root}/repos/dangling")
    os.symlink("/nonexistent", f"{r}/compiled/production/group_bys/quickstart/dangling.v1")
    cli(env, a, "dangling symlink in repo", "any", ["check", "--repo", r], timeout=60)
    r = copy_repo(f"{env.root}/repos/fifo")
    os.mkfifo(f"{r}/compiled/production/group_bys/quickstart/fifo.v1")
    cli(env, a, "FIFO config file (never-ending read)", "any", ["check", "--repo", r], timeout=30)
    r = copy_repo(f"{env.root}/repos/big")
    with open(f"{r}/compiled/production/group_bys/quickstart/big.v1", "w") as f:
        f.write('{"metaData": {"name": "quickstart.big.v1", "team": "quickstart", "description": "')
        f.write("x" * (100 * 1024 * 1024))
        f.write('"}}')
    cli(env, a, "100 MB config", "any", ["check", "--repo", r], timeout=60)
    r = copy_repo(f"{env.root}/repos/unreadable")
    os.chmod(f"{r}/compiled/production/group_bys/quickstart/users.v1", 0)
    cli(env, a, "unreadable config file", "any", ["check", "--repo", r], timeout=30)
    r = copy_repo(f"{env.root}/repos/teams")
    write(f"{r}/compiled/teams.json", "{")
    cli(env, a, "teams.json broken", "error", ["check", "--repo", r])
    write(f"{r}/compiled/teams.json", '{"quickstart": {"namespace": "../../etc"}}')
    cli(env, a, "teams.json namespace traversal", "any", ["check", "--repo", r])


# ---------------------------------------------------------------- data


def data_cases(env):
    a = "data"
    d = f"{env.root}/data"
    os.makedirs(d, exist_ok=True)

    def imp(case, expect, name, body, table=None, export_check=None, extra=()):
        path = f"{d}/{name}"
        write(path, body)
        t = table or "data.p_" + "".join(c if c.isalnum() else "_" for c in name.split(".")[0])
        rc, _, _ = cli(env, a, f"import {case}", expect, ["table", "import", t, path, *extra])
        if rc == 0 and export_check:
            cli(env, a, f"export {case}", "ok", ["table", "export", t, "--format", "json"],
                check=lambda rc, o, e: export_check(o))

    def rows(o):
        return [json.loads(l) for l in o.decode().splitlines() if l.strip()]

    imp("NUL byte in a cell", "any", "nul.csv", b"ds,ts,v\n2023-01-01,1,a\x00b\n",
        export_check=lambda o: None if rows(o)[0]["v"] == "a\x00b" else f"value changed: {short(o)}")
    imp("CRLF", "ok", "crlf.csv", b"ds,ts,v\r\n2023-01-01,1,a\r\n",
        export_check=lambda o: None if rows(o)[0]["v"] == "a" else f"CR kept: {short(o)}")
    imp("quoted newline", "ok", "qnl.csv", b'ds,ts,v\n2023-01-01,1,"a\nb"\n',
        export_check=lambda o: None if rows(o)[0]["v"] == "a\nb" else f"newline lost: {short(o)}")
    imp("1 MB cell", "ok", "bigcell.csv", b"ds,ts,v\n2023-01-01,1," + b"x" * 1_000_000 + b"\n",
        export_check=lambda o: None if len(rows(o)[0]["v"]) == 1_000_000 else "cell truncated")
    imp("ts at i64 edges", "ok", "edges.csv", b"ds,ts,v\n2023-01-01,9223372036854775807,a\n2023-01-01,-9223372036854775808,b\n",
        export_check=lambda o: None if [r["ts"] for r in rows(o)] == [9223372036854775807, -9223372036854775808] else short(o))
    imp("ts non-numeric", "any", "tsnan.csv", b"ds,ts,v\n2023-01-01,abc,a\n")
    imp("ds 2023-02-30", "error", "ds1.csv", b"ds,ts,v\n2023-02-30,1,a\n")
    imp("ds with spaces", "error", "ds2.csv", b"ds,ts,v\n 2023-01-01,1,a\n")
    imp("ds path traversal", "error", "ds3.csv", b"ds,ts,v\n../../x,1,a\n")
    imp("ds with slash", "error", "ds4.csv", b"ds,ts,v\n2023/01/01,1,a\n")
    imp("ds empty", "error", "ds5.csv", b"ds,ts,v\n,1,a\n")
    imp("ds as integer", "error", "ds6.csv", b"ds,ts,v\n20230101,1,a\n")
    imp("header only", "error", "hdr.csv", b"ds,ts,v\n")
    imp("empty header name", "any", "emptyhdr.csv", b"ds,,v\n2023-01-01,1,a\n")
    imp("header with unicode and quotes", "any", "uh.csv", 'ds,"ü ""x""",v\n2023-01-01,1,a\n'.encode())
    imp("10k columns", "any", "wide.csv", ("ds," + ",".join(f"c{i}" for i in range(10000)) + "\n2023-01-01," + ",".join("1" for _ in range(10000)) + "\n").encode())
    imp("unterminated quote", "any", "unterm.csv", b'ds,ts,v\n2023-01-01,1,"abc\n')
    imp("ragged rows", "error", "ragged.csv", b"ds,ts,v\n2023-01-01,1\n2023-01-01,1,a,b\n")
    imp("latin-1 bytes", "error", "latin1.csv", b"ds,ts,v\n2023-01-01,1,caf\xe9\n")
    imp("UTF-16 file", "error", "utf16.csv", "ds,ts,v\n2023-01-01,1,a\n".encode("utf-16"))
    imp("1000 partitions", "ok", "many.csv", ("ds,ts\n" + "".join(f"20{(i // 12) % 100:02d}-{i % 12 + 1:02d}-01,{i}\n" for i in range(1000))).encode())
    imp("wrong extension (.txt)", "error", "x.txt", b"ds,ts\n2023-01-01,1\n")
    imp("parquet that is CSV", "error", "fake.parquet", b"ds,ts\n2023-01-01,1\n")
    imp("parquet magic only", "error", "magic.parquet", b"PAR1PAR1")
    # Parquet with types a CSV cannot make, written by pyarrow when it is there.
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from decimal import Decimal
        from datetime import datetime, timezone

        def pqt(case, expect, table, name, extra=()):
            path = f"{d}/{name}.parquet"
            try:
                pq.write_table(table, path)
            except pa.ArrowException as e:
                print(f"# skipped {case}: pyarrow cannot write it ({e})", file=sys.stderr)
                return
            cli(env, a, f"import parquet {case}", expect, ["table", "import", f"data.pq_{name}", path, *extra])
            cli(env, a, f"export parquet {case}", "any", ["table", "export", f"data.pq_{name}", "--format", "json"])

        ds = pa.array(["2023-01-01"])
        pqt("struct", "any", pa.table({"ds": ds, "s": pa.array([{"a": 1, "b": "x"}])}), "struct")
        pqt("list", "any", pa.table({"ds": ds, "l": pa.array([[1, 2, None]])}), "list")
        pqt("map", "any", pa.table({"ds": ds, "m": pa.array([[("k", 1)]], type=pa.map_(pa.string(), pa.int64()))}), "map")
        pqt("decimal", "any", pa.table({"ds": ds, "d": pa.array([Decimal("12345678901234567890.123")], type=pa.decimal128(38, 3))}), "decimal")
        pqt("timestamp tz", "any", pa.table({"ds": ds, "t": pa.array([datetime(2023, 1, 1, tzinfo=timezone.utc)], type=pa.timestamp("us", tz="Asia/Kolkata"))}), "tstz")
        pqt("ds as date32", "any", pa.table({"ds": pa.array([datetime(2023, 1, 1).date()]), "v": [1]}), "date32")
        pqt("ds as int", "error", pa.table({"ds": pa.array([20230101]), "v": [1]}), "dsint")
        pqt("ds as timestamp", "any", pa.table({"ds": pa.array([datetime(2023, 1, 1)]), "v": [1]}), "dsts")
        pqt("ds dictionary", "any", pa.table({"ds": pa.array(["2023-01-01"]).dictionary_encode(), "v": [1]}), "dsdict")
        pqt("binary", "any", pa.table({"ds": ds, "b": pa.array([b"\xff\x00"])}), "binary")
        pqt("float16", "any", pa.table({"ds": ds, "h": pa.array([1.5], type=pa.float16())}), "f16")
        pqt("uint64 max", "any", pa.table({"ds": ds, "u": pa.array([2**64 - 1], type=pa.uint64())}), "u64")
        pqt("null type", "any", pa.table({"ds": ds, "n": pa.array([None], type=pa.null())}), "nulltype")
        pqt("duplicate columns", "error", pa.Table.from_arrays([ds, pa.array([1]), pa.array([2])], names=["ds", "a", "a"]), "dupcols")
        pqt("zero rows", "error", pa.table({"ds": pa.array([], type=pa.string()), "v": pa.array([], type=pa.int64())}), "zerorows")
        from datetime import date, time as dtime, timedelta
        pqt("timestamp ns at i64 edges", "any", pa.table({"ds": pa.array(["2023-01-01"] * 2),
            "t": pa.array([-2**63 + 1, 2**63 - 1], type=pa.timestamp("ns"))}), "tsns")
        pqt("timestamp s far future", "any", pa.table({"ds": ds, "t": pa.array([9_000_000_000_000_000], type=pa.timestamp("s"))}), "tss")
        pqt("large_string", "any", pa.table({"ds": ds, "s": pa.array(["x"], type=pa.large_string())}), "lstr")
        pqt("string_view", "any", pa.table({"ds": ds, "s": pa.array(["x"], type=pa.string_view())}), "sview")
        pqt("dictionary column", "any", pa.table({"ds": ds, "s": pa.array(["x"]).dictionary_encode()}), "dict")
        pqt("date64", "any", pa.table({"ds": ds, "d": pa.array([date(2023, 1, 1)], type=pa.date64())}), "date64")
        pqt("time32", "any", pa.table({"ds": ds, "t": pa.array([dtime(1, 2, 3)], type=pa.time32("s"))}), "time32")
        pqt("duration", "any", pa.table({"ds": ds, "d": pa.array([timedelta(days=1)], type=pa.duration("us"))}), "duration")
        pqt("fixed_size_binary", "any", pa.table({"ds": ds, "b": pa.array([b"ab"], type=pa.binary(2))}), "fsb")
        pqt("large_list", "any", pa.table({"ds": ds, "l": pa.array([[1]], type=pa.large_list(pa.int64()))}), "llist")
        pqt("list of structs of lists", "any", pa.table({"ds": ds, "l": pa.array([[{"a": [1, None]}]])}), "deep")
        pqt("decimal256", "any", pa.table({"ds": ds, "d": pa.array([Decimal("1.5")], type=pa.decimal256(76, 10))}), "dec256")
        pqt("ds with a null", "error", pa.table({"ds": pa.array(["2023-01-01", None]), "v": [1, 2]}), "dsnull")
        pqt("ds as large_string", "any", pa.table({"ds": pa.array(["2023-01-01"], type=pa.large_string()), "v": [1]}), "dslarge")
        pqt("ds as string_view", "any", pa.table({"ds": pa.array(["2023-01-01"], type=pa.string_view()), "v": [1]}), "dsview")
        pqt("ds as date32 before 1970", "any", pa.table({"ds": pa.array([date(1, 1, 1)]), "v": [1]}), "dsold")
        # An Int64 column of an existing table given as Int32, then as text: widening or an error, never a silent change.
        pq.write_table(pa.table({"ds": pa.array(["2023-01-02"]), "v": pa.array([7], type=pa.int32())}), f"{d}/i32.parquet")
        cli(env, a, "import parquet Int32 into an Int64 column", "any", ["table", "import", "data.pq_date32", f"{d}/i32.parquet"])
        pq.write_table(pa.table({"ds": pa.array(["2023-01-03"]), "v": pa.array(["7"])}), f"{d}/vstr.parquet")
        cli(env, a, "import parquet text into an Int64 column", "error", ["table", "import", "data.pq_date32", f"{d}/vstr.parquet"])
        # A source whose time column is a timestamp of microseconds (as Spark writes Parquet):
        # the GroupBy backfill must count the same rows as with epoch millis.
        import pyarrow.csv as pcsv
        t = pcsv.read_csv(f"{QS}/data/purchases.csv", convert_options=pcsv.ConvertOptions(column_types={"ds": pa.string()}))
        micros = pa.array([v * 1000 for v in t["ts"].to_pylist()], type=pa.timestamp("us", tz="UTC"))
        pq.write_table(t.set_column(t.schema.get_field_index("ts"), "ts", micros), f"{d}/purchases_us.parquet")
        wh_us = f"{env.root}/wh-ts-us"
        env.run(["table", "import", "data.purchases", f"{d}/purchases_us.parquet", "--warehouse", wh_us])
        conf = "compiled/production/group_bys/quickstart/purchases.v1"
        backfill = ["run", "--repo", QS, "--conf", conf, "--ds", "2023-11-29", "--force"]
        _, _, want, _ = env.run(backfill)
        cli(env, a, "GroupBy over a timestamp[us] time column", "ok", [*backfill, "--warehouse", wh_us],
            check=lambda rc, o, e: None if e.split(b" rows=")[-1] == want.split(b" rows=")[-1]
            else f"{short(e)} but with epoch millis: {short(want)}")
        cli(env, a, "export after type-drift imports", "ok", ["table", "export", "data.pq_date32", "--format", "json"],
            check=lambda rc, o, e: None if all(json.loads(l)["v"] in (1, 7) for l in o.decode().splitlines()) else f"values changed: {short(o)}")
    except ImportError:
        pass


# ---------------------------------------------------------------- HTTP


def raw_http(port, data, timeout=10, read_all=True):
    """Sends raw bytes; returns (status or None, body bytes, error text)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass  # a server may answer (413, 431) and close before reading all of a big request
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                return ("HANG", b"".join(chunks), "timeout")
            if not b:
                break
            chunks.append(b)
            if not read_all:
                break
        resp = b"".join(chunks)
    except (ConnectionResetError, BrokenPipeError) as e:
        return (None, b"", str(e))
    finally:
        s.close()
    if not resp:
        return (None, b"", "closed with no response")
    try:
        status = int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return (None, resp, "not HTTP")
    return (status, resp, "")


AUTH = {}  # port -> Authorization header value, once tokens exist


def request(port, method, path, body=b"", headers=None, timeout=10):
    hs = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if port in AUTH:
        hs["Authorization"] = AUTH[port]
    if body or method in ("POST", "PUT"):
        hs["Content-Length"] = str(len(body))
        hs.setdefault("Content-Type", "application/json")
    hs.update(headers or {})
    head = f"{method} ".encode() + (path if isinstance(path, bytes) else path.encode()) + b" HTTP/1.1\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() if isinstance(v, str) else k.encode() + b": " + v + b"\r\n" for k, v in hs.items())
    return raw_http(port, head + b"\r\n" + body, timeout=timeout)


def http(area, case, expect, port, method, path, body=b"", headers=None, timeout=10, check=None):
    status, resp, err = request(port, method, path, body, headers, timeout)
    body_text = resp.split(b"\r\n\r\n", 1)[-1]
    if status == "HANG":
        outcome, detail = "HANG", f"no response within {timeout}s"
    elif status is None:
        outcome, detail = "PANIC", err
    elif status >= 500:
        outcome, detail = "WRONG", f"{status} for client input: {short(body_text)}"
    elif status >= 400:
        outcome, detail = "error-clean", f"{status} {short(body_text, 100)}"
    else:
        outcome, detail = "ok", f"{status}"
    if outcome in ("ok", "error-clean") and check:
        why = check(status, resp)
        if why:
            outcome, detail = "WRONG", why
    record(area, case, expect, outcome, detail)


def start(env, args, port):
    log = open(f"{env.root}/server-{port}.log", "wb")
    p = subprocess.Popen([BIN, *args], env=env.env, cwd=env.root, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"{args} exited: {open(log.name).read()[-2000:]}")
            time.sleep(0.1)
    raise RuntimeError(f"{args} did not listen")


def server_panicked(env, port):
    text = open(f"{env.root}/server-{port}.log", "rb").read()
    return b"panicked at" in text


def slowloris(port, hold=12):
    """Headers sent a byte at a time, never finished: does the server still answer others?"""
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/fetch/join/quickstart/training_set.v2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        socks.append(s)
    return socks


def http_cases(env, api_port, serve_port):
    a = "http"
    P = api_port
    for path in ["/api/v1/dags/../../x", "/api/v1/dags/%2e%2e/%2e%2e", "/api/v1/dags/%2e%2e%2f%2e%2e%2fetc",
                 "/api/v1/dags/chronon_join_backfill/runs/..%2f..%2f/tasks/x/logs", "/api/v1/dags/chronon_join_backfill/runs/x/tasks/..%2F..%2F..%2Fetc%2Fpasswd/logs",
                 "/api/v1/dags/%00", "/api/v1/dags/%ff%fe", "/api/v1/dags/" + "a" * 100000, "/ui/../../../etc/passwd",
                 "/ui/assets/..%2f..%2fCargo.toml", "/api/v1/ui/configs/..%2f..%2f..%2fetc%2fpasswd", "/api/v1/ui/configs/../../../../etc/passwd",
                 "/api/v1/ui/tables/..%2f..", "/api/v1/ui/tables/data.users%00", "/api/v1/ui/dags/%2e%2e/grid", "//etc/passwd",
                 "/api/v1/runs?state=nope&limit=-1", "/api/v1/runs?limit=99999999999999999999", "/api/v1/runs?limit=-9223372036854775808",
                 "/api/v1/runs?dag_id=%ff", "/api/v1/runs?" + "a=b&" * 20000]:
        http(a, f"GET {path[:60]}", "any", P, "GET", path,
             check=lambda st, r: "served a file outside" if b"root:" in r or b"[workspace]" in r else None)
    for q in ["try=-1", "try=99999999999999999999", "try=0", "try=abc", "offset=-5", "offset=18446744073709551615",
              "offset=99999999999999999999999", "try=1&offset=1", "try=1&try=2"]:
        http(a, f"logs ?{q}", "any", P, "GET", f"/api/v1/dags/chronon_join_backfill/runs/x/tasks/y/logs?{q}")
    for route in ["/api/v1/ui/dags?team=%ff&state=nope&q=" + "x" * 5000, "/api/v1/ui/dags/chronon_join_backfill/grid?runs=-1",
                  "/api/v1/ui/dags/chronon_join_backfill/grid?runs=99999999999999999999", "/api/v1/ui/dags/chronon_join_backfill/grid?limit=-5&before=abc",
                  "/api/v1/ui/resources?days=-1", "/api/v1/ui/resources?days=99999999999", "/api/v1/ui/errors?since=-1",
                  "/api/v1/ui/status?limit=-1", "/api/v1/ui/tables/nope.nope", "/api/v1/ui/tables/data.users?limit=-1",
                  "/api/v1/ui/freshness?at=9999-99-99", "/api/v1/ui/dags/nope/runs/nope", "/api/v1/ui/dags/chronon_join_backfill/runs/%ff/tasks/%ff",
                  "/api/v1/ui/online?x=1", "/api/v1/ui/lineage?depth=-1", "/api/v1/ui/configs/" + "a/" * 2000]:
        http(a, f"GET {route[:60]}", "any", P, "GET", route)
    dag = "/api/v1/dags/chronon_join_backfill"
    for body in [b"", b"{", b"null", b"[]", b'{"start_ds": "2023-02-30", "end_ds": "2023-03-01"}',
                 b'{"start_ds": "0001-01-01", "end_ds": "9999-12-31"}', b'{"start_ds": 5, "end_ds": []}',
                 b'{"start_ds": "2023-11-30", "end_ds": "2023-11-01"}', b"[" * 100000 + b"]" * 100000,
                 b'{"start_ds": "2023-11-01", "end_ds": "2023-11-01", "start_ds": "2023-11-02"}', b"\xff\xfe",
                 b'{"start_ds": "' + b"9" * 1000000 + b'"}']:
        http(a, f"POST trigger body {short(body, 30)!r}", "any", P, "POST", f"{dag}/runs", body)
        http(a, f"POST backfill body {short(body, 30)!r}", "any", P, "POST", f"{dag}/backfill", body)
    for body in [b'{"state": "nope"}', b'{"state": "success", "downstream": "yes"}', b"{", b'{"state": null}']:
        http(a, f"POST mark {short(body, 30)!r}", "any", P, "POST", f"{dag}/runs/x/tasks/y/mark", body)
    for method in ["OPTIONS", "TRACE", "PUT", "DELETE", "PATCH", "CONNECT", "FOO", "get"]:
        http(a, f"{method} /api/v1/dags", "any", P, method, "/api/v1/dags")
    http(a, "Content-Length lies (longer)", "any", P, "POST", f"{dag}/pause", b"{}", headers={"Content-Length": "100"}, timeout=40)
    http(a, "Content-Length negative", "any", P, "POST", f"{dag}/pause", b"{}", headers={"Content-Length": "-1"})
    http(a, "Content-Length huge", "any", P, "POST", f"{dag}/runs", b"{}", headers={"Content-Length": "99999999999999999999"})
    http(a, "two Content-Length", "any", P, "POST", f"{dag}/pause", b"{}", headers={"Content-Length": "2", "content-length": "3"})
    http(a, "Host header foreign", "error", P, "POST", f"{dag}/pause", b"{}", headers={"Host": "evil.example"})
    http(a, "Host header empty", "any", P, "GET", "/api/v1/dags", headers={"Host": ""})
    http(a, "Origin foreign on POST", "error", P, "POST", f"{dag}/pause", b"{}", headers={"Origin": "http://evil.example"})
    http(a, "Sec-Fetch-Site cross-site", "error", P, "POST", f"{dag}/pause", b"{}", headers={"Sec-Fetch-Site": "cross-site"})
    http(a, "Authorization garbage", "any", P, "GET", "/api/v1/dags", headers={"Authorization": "Bearer " + "x" * 10000})
    http(a, "Authorization non-UTF-8", "any", P, "GET", "/api/v1/dags", headers={"Authorization": b"Bearer \xff\xfe"})
    http(a, "Cookie huge", "any", P, "GET", "/api/v1/ui/me", headers={"Cookie": "cf_session=" + "a" * 60000})
    http(a, "100 KB header", "any", P, "GET", "/api/v1/dags", headers={"X-Big": "a" * 100000})
    http(a, "1 MB URL", "any", P, "GET", "/api/v1/dags?x=" + "a" * 1000000)
    http(a, "invalid UTF-8 in path (raw)", "any", P, "GET", b"/api/v1/dags/\xff\xfe")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    http(a, "login body 1 MB", "any", P, "POST", "/ui/login", b"token=" + b"a" * 1000000, headers=form)
    # A failed sign-in answers the form's way: 303 back to /ui/login?error=..., and no session.
    refused = lambda st, r: None if b"/ui/login?error=" in r and b"set-cookie" not in r.lower() else f"signed in? {short(r, 200)}"
    http(a, "login wrong token", "any", P, "POST", "/ui/login", b"token=cft_nope", headers=form, check=refused)
    http(a, "login token of bad UTF-8", "any", P, "POST", "/ui/login", b"token=%ff%fe", headers=form, check=refused)
    http(a, "login token of another format", "any", P, "POST", "/ui/login", b"token=cft_" + b"0" * 12 + b"_", headers=form, check=refused)
    http(a, "login repeated fields", "any", P, "POST", "/ui/login", b"token=a&token=b&next=//evil.example", headers=form,
         check=lambda st, r: "redirects off-site" if b"location: //evil" in r.lower() or b"location: http://evil" in r.lower() else None)
    http(a, "configs check bomb", "any", P, "POST", "/api/v1/ui/configs/check", b"[" * 100000 + b"]" * 100000)
    check_route = "/api/v1/ui/configs/check"
    gb_text = open(f"{QS}/compiled/production/group_bys/quickstart/purchases.v1").read()
    for case, file, text in [
        ("10k-deep config", "compiled/production/group_bys/quickstart/x.v1", "[" * 10000 + "]" * 10000),
        ("file path traversal", "../../../../tmp/chronoflow-probe-evil", "{}"),
        ("absolute file path", "/tmp/chronoflow-probe-evil", "{}"),
        ("file is a directory", "compiled/production", gb_text),
        ("empty file name", "", gb_text),
        ("config named like another", "compiled/production/group_bys/quickstart/copy.v1", gb_text),
        ("config with a cycle-making join", "compiled/production/joins/quickstart/training_set.v2", gb_text),
        ("derivation syntax error", "compiled/production/group_bys/quickstart/purchases.v1",
         gb_text.replace('"keyColumns"', '"derivations": [{"name": "d", "expression": "1 +* ("}], "keyColumns"')),
        ("1 MB of text", "compiled/production/group_bys/quickstart/purchases.v1", "x" * 1_100_000),
    ]:
        http(a, f"configs check: {case}", "any", P, "POST", check_route, json.dumps({"file": file, "json": text}).encode(), timeout=60,
             check=lambda st, r: "wrote a file outside the repo" if os.path.exists("/tmp/chronoflow-probe-evil") else None)
    http(a, "playground odd", "any", P, "POST", "/api/v1/ui/online/playground", b'{"kind": "join", "name": "../../x", "keys": {"user_id": 1}, "at_millis": -9223372036854775808}')
    http(a, "playground huge at", "any", P, "POST", "/api/v1/ui/online/playground", b'{"kind": "join", "name": "quickstart/training_set.v2", "keys": {"user_id": 1}, "at_millis": 9223372036854775807}')
    # Fetcher.
    S = serve_port
    j = "/v1/fetch/join/quickstart/training_set.v2"
    for path, body in [(j, b"[" * 100000 + b"]" * 100000), (j, b'[{"user_id": 1}]' + b" " * 5_000_000), (j, b"\xff"),
                       (j + "?at_millis=-1", b'[{"user_id": 1}]'), (j + "?at_millis=abc", b'[{"user_id": 1}]'),
                       (j + "?at_millis=9223372036854775807", b'[{"user_id": 1}]'), (j + "?at_millis=99999999999999999999", b'[{"user_id": 1}]'),
                       (j, b'[{"user_id": 1e308}]'), (j, b'[{"user_id": "1"}]'), (j, b'[{"user_id": [[[[1]]]]}]'),
                       (j, b'{"user_id": 1}'), (j, b'[{"user_id": 1, "user_id": 2}]'), (j, b'[{}]'), (j, b"[]"),
                       ("/v1/fetch/join/..%2f..%2fetc%2fpasswd", b'[{"user_id": 1}]'), ("/v1/fetch/join/" + "a" * 100000, b"[]"),
                       ("/v1/fetch/groupby/quickstart.purchases.v1", b'[{"user_id": -9223372036854775808}]'),
                       ("/v1/fetch/groupby/quickstart.purchases.v1?at_millis=-9223372036854775807", b'[{"user_id": 1}]'),
                       ("/v1/fetch/nope/x", b"[]"), ("/v1/fetch/join/", b"[]")]:
        http(a, f"fetch {path[15:50]} {short(body, 24)!r}", "any", S, "POST", path, body, timeout=30)
    http(a, "fetch GET", "any", S, "GET", j)
    http(a, "fetch Content-Length lies", "any", S, "POST", j, b"[]", headers={"Content-Length": "1000"}, timeout=40)
    # Correctness: the fetch of the quickstart's first training row gives the backfill's values.
    http(a, "fetch known row matches", "ok", S, "POST", j + "?at_millis=1701374234059", b'[{"user_id": 26}]', timeout=30,
         check=lambda st, r: None if b"purchase_price_sum_3d" in r or b"quickstart_purchases_v1_purchase_price_sum_3d" in r else f"unexpected body {short(r)}")
    # Slowloris and a flood of connections: the servers must still answer.
    for name, port in (("api", P), ("serve", S)):
        socks = slowloris(port)
        t0 = time.time()
        st, _, err = request(port, "GET", "/api/v1/health" if port == P else "/health", timeout=10)
        elapsed = time.time() - t0
        outcome = "ok" if st == 200 else ("HANG" if st == "HANG" else "PANIC" if st is None else "WRONG")
        record(a, f"{name}: answers during 50 slowloris connections", "ok", outcome, f"{st} in {elapsed:.2f}s")
        for s in socks:
            s.close()

        def one(_):
            return request(port, "GET", "/api/v1/health" if port == P else "/health", timeout=30)[0]

        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            codes = list(ex.map(one, range(500)))
        bad = [c for c in codes if c != 200]
        record(a, f"{name}: 500 concurrent health checks", "ok", "ok" if not bad else "WRONG", f"{len(bad)} not 200: {bad[:5]}")
    for name, port in (("api", P), ("serve", S)):
        if server_panicked(env, port):
            record(a, f"{name}: server log has no panic", "ok", "PANIC", "panicked at in the server's log")
        else:
            record(a, f"{name}: server log has no panic", "ok", "ok", "")


# ---------------------------------------------------------------- state


def state_cases(env):
    a = "state"
    # A warehouse that is a file, a read-only warehouse.
    write(f"{env.root}/whfile", "x")
    cli(env, a, "warehouse is a file (import)", "error", ["table", "import", "data.x", f"{QS}/data/users.csv", "--warehouse", f"{env.root}/whfile"])
    ro = f"{env.root}/wh-ro"
    shutil.copytree(f"{env.root}/wh", ro)
    for root, dirs, files in os.walk(ro):
        for x in dirs + files:
            os.chmod(os.path.join(root, x), 0o555 if x in dirs else 0o444)
    os.chmod(ro, 0o555)
    if os.geteuid() != 0:
        cli(env, a, "read-only warehouse import", "error", ["table", "import", "data.users", f"{QS}/data/users.csv", "--warehouse", ro])
    cli(env, a, "read-only warehouse export", "ok", ["table", "export", "data.users", "--format", "csv", "--warehouse", ro])
    # A corrupt manifest, a manifest pointing outside the table, a _table.json that lies.
    wh = f"{env.root}/wh-bad"
    shutil.copytree(f"{env.root}/wh", wh)
    man = f"{wh}/data/users/ds=2023-11-29/_manifest.json"
    m = json.load(open(man))
    write(man, "{")
    cli(env, a, "corrupt _manifest.json", "error", ["table", "export", "data.users", "--format", "csv", "--warehouse", wh])
    m2 = json.loads(json.dumps(m))
    text = json.dumps(m2)
    for k in ("files", "parts"):
        if k in m2 and isinstance(m2[k], list) and m2[k]:
            entry = m2[k][0]
            if isinstance(entry, dict):
                for kk in entry:
                    if isinstance(entry[kk], str) and entry[kk].endswith(".parquet"):
                        entry[kk] = "../../../../../etc/passwd"
            else:
                m2[k][0] = "../../../../../etc/passwd"
            text = json.dumps(m2)
    write(man, text)
    cli(env, a, "manifest names ../ file", "error", ["table", "export", "data.users", "--format", "csv", "--warehouse", wh],
        check=lambda rc, o, e: "read a file outside the table" if b"root:" in o else None)
    write(man, json.dumps(m))
    os.makedirs(f"{wh}/data/users/ds=not-a-date", exist_ok=True)
    write(f"{wh}/data/users/ds=not-a-date/_manifest.json", "{}")
    os.makedirs(f"{wh}/data/users/ds=2023-02-30", exist_ok=True)
    cli(env, a, "partition dirs with bad dates", "any", ["table", "partitions", "data.users", "--warehouse", wh])
    cli(env, a, "export beside bad partition dirs", "any", ["table", "export", "data.users", "--format", "csv", "--warehouse", wh])
    table_json = open(f"{wh}/data/users/_table.json").read()
    write(f"{wh}/data/users/_table.json", '{"fields": 5}')
    cli(env, a, "corrupt _table.json", "error", ["table", "export", "data.users", "--format", "csv", "--warehouse", wh])
    write(f"{wh}/data/users/_table.json", table_json.replace('"Int64"', '"Utf8"'))
    cli(env, a, "_table.json whose types lie", "any", ["table", "export", "data.users", "--format", "json", "--warehouse", wh])
    # State store damage.
    db = f"{env.root}/bad.db"
    shutil.copy(f"{env.root}/state.db", db)
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    if "chronoflow_schema" in tables:
        con.execute("insert into chronoflow_schema (version, applied_ms) values (999, 0)")
    con.commit()
    con.close()
    cli(env, a, "state store from the future", "error", ["dags", "list", "--database-url", f"sqlite://{db}"])
    write(f"{env.root}/garbage.db", b"SQLite format 3\x00" + b"\xff" * 4000)
    cli(env, a, "state store garbage", "error", ["dags", "list", "--database-url", f"sqlite://{env.root}/garbage.db"])
    cli(env, a, "state store in a missing dir", "any", ["dags", "list", "--database-url", f"sqlite://{env.root}/no/such/dir/x.db"])
    # KV store damage.
    write(f"{env.root}/kv-garbage", b"\x00" * 10000)
    cli(env, a, "KV file garbage", "error", ["fetch", "-n", "quickstart/training_set.v2", "-k", '{"user_id": 1}', "--kv", f"{env.root}/kv-garbage"])
    cli(env, a, "KV path is a directory", "error", ["fetch", "-n", "quickstart/training_set.v2", "-k", '{"user_id": 1}', "--kv", env.root])
    # Two standalones on one SQLite file; SIGKILL mid-backfill, then restart.
    s2 = Env(f"{env.root}/twin")
    os.makedirs(s2.root, exist_ok=True)
    for t in ("purchases", "returns", "users", "checkouts"):
        s2.run(["table", "import", f"data.{t}", f"{QS}/data/{t}.csv"])
    # As quickstart.sh: the training sets' sensors wait for a users snapshot of 2023-11-30.
    users = open(f"{QS}/data/users.csv").read().replace("\n2023-11-29,", "\n2023-11-30,")
    write(f"{s2.root}/users.csv", users)
    s2.run(["table", "import", "data.users", f"{s2.root}/users.csv"])
    for gb in ("purchases", "returns", "users"):
        s2.run(["run", "--repo", QS, "--conf", f"compiled/production/group_bys/quickstart/{gb}.v1",
                "--start-ds", "2023-11-01", "--end-ds", "2023-11-30"], timeout=300)
    s2.run(["dags", "sync", "--repo", QS])
    s2.run(["dags", "pause", "--all"])
    s2.run(["dags", "unpause", "chronon_join_backfill"])
    s2.run(["dags", "trigger", "chronon_join_backfill", "--start-ds", "2023-11-30", "--end-ds", "2023-11-30"])
    procs = [subprocess.Popen([BIN, "standalone", "--repo", QS, "--no-api", "--tick-ms", "50"], env=s2.env, cwd=s2.root,
                              stdout=subprocess.DEVNULL, stderr=open(f"{s2.root}/standalone-{i}.log", "wb")) for i in range(2)]
    time.sleep(3)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    time.sleep(1)
    procs[1].send_signal(signal.SIGTERM)
    try:
        procs[1].wait(timeout=30)
        hang = False
    except subprocess.TimeoutExpired:
        procs[1].kill()
        hang = True
    logs = b"".join(open(f"{s2.root}/standalone-{i}.log", "rb").read() for i in range(2))
    outcome = "HANG" if hang else ("PANIC" if b"panicked at" in logs else "ok")
    record(a, "two standalones on one SQLite file, one SIGKILLed", "ok", outcome, "SIGTERM ignored" if hang else "")
    # A try the killed process held is reaped once its heartbeat times out; then all finish.
    cli(s2, a, "restart after SIGKILL runs to idle", "ok", ["standalone", "--repo", QS, "--no-api", "--until-idle", "--tick-ms", "50"], timeout=240)

    def all_done(rc, out, err):
        try:
            runs = json.loads(out)
        except ValueError:
            return f"runs list is not JSON: {short(out)}"
        states = [r.get("state") for r in (runs if isinstance(runs, list) else runs.get("runs", []))]
        return None if states and all(s == "success" for s in states) else f"runs after restart: {states}"

    cli(s2, a, "every run succeeded after restart", "ok", ["runs", "list", "--dag", "chronon_join_backfill", "--format", "json"], check=all_done)

    def whole(rc, out, err):
        n = len([l for l in out.decode().splitlines() if l.strip()])
        return None if n == 200 else f"{n} training rows, not the 200 checkouts of 2023-11-30"

    cli(s2, a, "training set whole after SIGKILL", "ok",
        ["table", "export", "default.quickstart_training_set_v2", "--ds", "2023-11-30", "--format", "json"], check=whole)


# ---------------------------------------------------------------- main


def main():
    if not os.path.exists(BIN):
        sys.exit(f"no binary at {BIN}")
    root = tempfile.mkdtemp(prefix="chronoflow-probe-")
    env = Env(root)
    t0 = time.time()
    setup(env)
    servers = []
    try:
        areas = [("cli", cli_cases), ("config", config_cases), ("data", data_cases), ("state", state_cases)]
        for name, fn in areas:
            if ONLY in (None, name):
                t = time.time()
                fn(env)
                print(f"# {name}: {time.time() - t:.0f}s", file=sys.stderr)
        if ONLY in (None, "http"):
            api, srv = free_port(), free_port()
            servers.append(start(env, ["standalone", "--repo", QS, "--listen", f"127.0.0.1:{api}", "--tick-ms", "200"], api))
            # The embedded KV store is one process's: the fetcher serves a copy.
            shutil.copy(f"{root}/kv", f"{root}/kv-serve")
            servers.append(start(env, ["serve", "--listen", f"127.0.0.1:{srv}", "--kv", f"{root}/kv-serve"], srv))
            # The CLI cases created tokens, so the API wants one: an admin's reaches every route.
            rc, out, err, _ = env.run(["tokens", "create", "--name", "probe", "--team", "*", "--role", "admin"])
            if rc == 0:
                AUTH[api] = "Bearer " + out.decode().split()[0]
            t = time.time()
            http_cases(env, api, srv)
            print(f"# http: {time.time() - t:.0f}s", file=sys.stderr)
    finally:
        for p in servers:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                RESULTS.append(("http", "server stops on SIGTERM", "ok", "HANG", "killed after 20s"))
    width = max(len(r[1]) for r in RESULTS)
    print(f"{'area':7} {'case':{width}} {'expect':6} {'outcome':12} detail")
    for area, case, expect, outcome, detail in RESULTS:
        print(f"{area:7} {case:{width}} {expect:6} {outcome:12} {detail[:140]}")
    bad = [r for r in RESULTS if r[3] in ("PANIC", "HANG", "WRONG")]
    by_area = {}
    for r in RESULTS:
        by_area[r[0]] = by_area.get(r[0], 0) + 1
    print(f"\n{len(RESULTS)} cases ({', '.join(f'{k} {v}' for k, v in by_area.items())}) in {time.time() - t0:.0f}s; "
          f"{len(bad)} PANIC/HANG/WRONG")
    for r in bad:
        print(f"  {r[3]}: [{r[0]}] {r[1]}: {r[4][:300]}")
    if os.environ.get("PROBE_KEEP"):
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
