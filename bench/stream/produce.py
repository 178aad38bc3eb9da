#!/usr/bin/env python3
"""Create a topic and produce N quickstart `returns` events into it as fast as the client goes.

usage: produce.py <brokers> <topic> <partitions> <n> <users> <events.jsonl> <end_offsets.json>

Events: {"ts": <millis>, "return_id": str, "user_id": "u<k>", "product_id": "p<k>", "refund_amt": int},
ts spread over the minute before the run (distinct per user), user_id drawn from `users` users (seeded). The events go
to <events.jsonl> too (for Feast's push and for check.py), the topic's end offsets per partition
to <end_offsets.json>. Prints one JSON line: events/s into the broker (produce + flush).
"""
import json
import random
import sys
import time

import kafka_io


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    brokers, topic, partitions, n, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rnd = random.Random(5)
    now = int(time.time() * 1000)
    values, last = [], {}
    with open(sys.argv[6], "w") as f:
        for i in range(n):
            user = f"u{rnd.randrange(users)}"
            # A user's events have distinct times, so "its newest event" is one event (Feast keeps it).
            ts = max(now - 60_000 + i * 60_000 // max(n, 1), last.get(user, 0) + 1)
            last[user] = ts
            e = {"ts": ts, "return_id": f"s{i}", "user_id": user, "product_id": f"p{rnd.randint(1, 99)}",
                 "refund_amt": rnd.randint(5, 500)}
            line = json.dumps(e)
            f.write(line + "\n")
            values.append((e["user_id"].encode(), line.encode()))
    kafka_io.create_topic(brokers, topic, partitions)
    p = kafka_io.Producer(brokers, topic, linger_ms=5)
    t0 = time.perf_counter()
    for i, (key, value) in enumerate(values):
        p.send(key, value)
        if i % 1000 == 0:
            p.poll()
    p.flush()
    elapsed = time.perf_counter() - t0
    ends = kafka_io.end_offsets(brokers, topic, partitions)
    if sum(ends.values()) != n:
        sys.exit(f"the topic holds {sum(ends.values())} records, {n} were produced: {ends}")
    json.dump({str(k): v for k, v in ends.items()}, open(sys.argv[7], "w"))
    print(json.dumps({"bench": "produce", "client": kafka_io.CLIENT, "events": n, "partitions": partitions,
                      "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}), flush=True)


if __name__ == "__main__":
    main()
