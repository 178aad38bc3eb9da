#!/usr/bin/env python3
"""Time a chronoflow streaming consumer until it has committed every produced record.

usage: wait_status.py <status.json> <end_offsets.json> <consumer_pid> <label> <start_epoch_s> [broker_pid]

<status.json> is the consumer's --status-file (rewritten every second: records_read, rows_written,
malformed, partitions[] with offsets and lag). <end_offsets.json> is {"<partition>": end offset}
from the producer. <start_epoch_s>: the wall time just before the consumer was spawned.
Done when every partition's committed offset reaches its end offset (or, if the file names no
committed offset, when every lag is 0 and records_read covers the records). With
--until-caught-up the consumer exits right then, which is seen within 20 ms; without it the file's
once-a-second rewrite bounds the precision.

Prints one JSON line: wall seconds to caught up, the steady rate between the first and the last
status that showed records read, and the CPU seconds the consumer and the broker used meanwhile
(which of them bounds the rate). Gives up after WAIT_TIMEOUT seconds (default 900).
"""
import json
import os
import sys
import time

OFFSET_FIELDS = ("committed_offset", "committed", "offset", "position")


def alive(pid):
    """Running (a zombie, exited but not yet reaped by the shell, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cpu_seconds(pid):
    """User + system CPU of a process (a zombie still reports its totals)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, IndexError, ValueError):
        return None


def read(path):
    try:
        return os.stat(path).st_mtime_ns, json.load(open(path))
    except (FileNotFoundError, json.JSONDecodeError):
        return None, None  # not written yet, or caught mid-write


def committed(part):
    for name in OFFSET_FIELDS:
        if isinstance(part.get(name), int):
            return part[name]
    return None


def caught_up(status, ends, total):
    parts = {str(p.get("partition")): p for p in status.get("partitions", [])}
    offsets = {k: committed(p) for k, p in parts.items()}
    if ends and all(offsets.get(k) is not None for k in ends):
        return all(offsets[k] >= end for k, end in ends.items())
    lags = [p.get("lag") for p in parts.values()]
    return (bool(lags) and all(lag == 0 for lag in lags)
            and status.get("records_read", 0) >= total)


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    path, ends = sys.argv[1], {str(k): v for k, v in json.load(open(sys.argv[2])).items()}
    pid, label = int(sys.argv[3]), sys.argv[4]
    start = float(sys.argv[5])
    broker = int(sys.argv[6]) if len(sys.argv) == 7 else None
    broker_cpu0 = cpu_seconds(broker) if broker else None
    timeout = float(os.environ.get("WAIT_TIMEOUT", "900"))
    consumer_cpu = None
    total = sum(ends.values())
    seen = []  # (seconds, records_read) at each new status
    last_mtime, status = None, {}
    while True:
        now = time.time() - start
        if now > timeout:
            sys.exit(f"{label}: not caught up after {timeout:.0f} s; last status: {json.dumps(status)}")
        running = alive(pid)
        consumer_cpu = cpu_seconds(pid) or consumer_cpu
        mtime, new = read(path)
        if new is not None and mtime != last_mtime:
            status, last_mtime = new, mtime
            seen.append((now, status.get("records_read", 0)))
        if status and caught_up(status, ends, total):
            break
        if not running:
            # With --until-caught-up the consumer exits once it has read everything: its last
            # status (read above, after the exit) must say so.
            sys.exit(f"{label}: the consumer exited before catching up; last status: {json.dumps(status)}")
        time.sleep(0.02)
    broker_cpu = cpu_seconds(broker) if broker else None
    reading = [(t, r) for t, r in seen if r > 0]
    steady = None
    if len(reading) >= 2 and reading[-1][0] > reading[0][0]:
        steady = (reading[-1][1] - reading[0][1]) / (reading[-1][0] - reading[0][0])
    print(json.dumps({"bench": "ingest", "label": label, "records": total, "seconds": round(now, 2),
                      "events_per_s": round(total / now), "steady_events_per_s": round(steady) if steady else None,
                      "records_read": status.get("records_read"), "rows_written": status.get("rows_written"),
                      "malformed": status.get("malformed"),
                      "consumer_cpu_s": consumer_cpu,
                      "broker_cpu_s": round(broker_cpu - broker_cpu0, 2) if broker_cpu is not None and broker_cpu0 is not None else None}), flush=True)


if __name__ == "__main__":
    main()
