#!/usr/bin/env python3
"""Event -> fetch freshness: produce at a steady rate and time sampled events until a fetch counts them.

usage: freshness.py <brokers> <topic> <fetch_url> <label> <rate> <seconds> <samples> [users]

Produces rate*seconds `returns` events paced in 1 ms steps (user_id from `users` users, default
10,000). `samples` of them, evenly spaced, carry a user_id of their own; a poller thread fetches
every pending sampled key in one request (POST <fetch_url>, [{"user_id": k}, ...]) in a loop, and
an event's freshness is the time from just before its produce() call to the arrival of the first
response whose refund_amt_count_3d counts it (an upper bound by one fetch's round trip).
Before measuring, one event must become visible within FRESH_WARMUP seconds (default 60: the
consumer is subscribed and the path works). Prints one JSON line.
"""
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

import kafka_io


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


class Poller(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port, u.path + (f"?{u.query}" if u.query else "")
        self.lock = threading.Lock()
        self.pending = {}   # user_id -> produce time (perf_counter)
        self.latency = {}   # user_id -> seconds
        self.fetches = 0
        self.errors = []
        self.stop = threading.Event()

    def add(self, key, t):
        with self.lock:
            self.pending[key] = t

    def run(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self.stop.is_set():
            with self.lock:
                keys = list(self.pending)[:1000]
            if not keys:
                time.sleep(0.001)
                continue
            body = json.dumps([{"user_id": k} for k in keys])
            try:
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                now = time.perf_counter()
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                time.sleep(0.01)
                continue
            self.fetches += 1
            if resp.status != 200:
                self.errors.append(f"{resp.status}: {data[:200]!r}")
                time.sleep(0.01)
                continue
            results = json.loads(data)["results"]
            with self.lock:
                for k, r in zip(keys, results):
                    count = (r.get("features") or {}).get("refund_amt_count_3d")
                    if count and k in self.pending:
                        self.latency[k] = now - self.pending.pop(k)
            time.sleep(0.001)


def event(key, rnd, i):
    return json.dumps({"ts": int(time.time() * 1000), "return_id": f"f{i}", "user_id": key,
                       "product_id": f"p{rnd.randint(1, 99)}", "refund_amt": rnd.randint(5, 500)}).encode()


def main():
    if len(sys.argv) not in (8, 9):
        sys.exit(__doc__)
    brokers, topic, url, label = sys.argv[1:5]
    rate, seconds, samples = int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
    users = int(sys.argv[8]) if len(sys.argv) == 9 else 10_000
    run = f"{int(time.time()) % 100000}"  # sampled keys are new in every run
    rnd = random.Random(9)
    p = kafka_io.Producer(brokers, topic, linger_ms=1)
    poller = Poller(url)
    poller.start()

    # Warm-up: the path works end to end.
    key = f"w{run}"
    poller.add(key, time.perf_counter())
    p.send(key.encode(), event(key, rnd, -1))
    p.flush()
    warmup = float(os.environ.get("FRESH_WARMUP", "60"))
    deadline = time.monotonic() + warmup
    while key not in poller.latency:
        if time.monotonic() > deadline:
            sys.exit(f"{label}: a produced event was not served within {warmup:.0f} s "
                     f"(fetches {poller.fetches}, errors {poller.errors[-3:]})")
        time.sleep(0.01)

    total = int(rate * seconds)
    every = max(1, total // max(samples, 1))
    t0 = time.perf_counter()
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        while i < due:
            if i % every == every // 2:
                key = f"f{run}-{i}"
                poller.add(key, time.perf_counter())
            else:
                key = f"u{rnd.randrange(users)}"
            p.send(key.encode(), event(key, rnd, i))
            i += 1
        p.poll()
        time.sleep(0.001)
    produced_s = time.perf_counter() - t0
    p.flush()
    deadline = time.monotonic() + 30
    while poller.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    poller.stop.set()
    poller.join()
    lat = [v for k, v in poller.latency.items() if k.startswith("f")]
    print(json.dumps({
        "bench": "freshness", "label": label, "rate": rate, "achieved_rate": round(total / produced_s),
        "events": total, "samples": len(lat) + len(poller.pending), "served": len(lat),
        "not_served_in_30s": len(poller.pending), "fetches": poller.fetches, "fetch_errors": len(poller.errors),
        "p50_ms": round(pct(lat, 0.5) * 1000, 1) if lat else None,
        "p99_ms": round(pct(lat, 0.99) * 1000, 1) if lat else None,
        "max_ms": round(max(lat) * 1000, 1) if lat else None}), flush=True)


if __name__ == "__main__":
    main()
