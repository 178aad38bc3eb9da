#!/usr/bin/env python3
"""Check what the consumer ingested: served 30-day counts and sums = batch events + streamed events.

usage: check.py <batch.csv> <events.jsonl> <fetch_url> <label> [keys]

For `keys` users (default 200, spread over all of them) fetches quickstart.returns.v1 and compares
refund_amt_count_30d and refund_amt_sum_30d with the batch rows (all inside the window, see
gen_batch.py) plus the produced events of that user. Exits 1 on the first mismatch.
"""
import collections
import csv
import json
import sys
import urllib.request


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    batch, events, url, label = sys.argv[1:5]
    sample = int(sys.argv[5]) if len(sys.argv) == 6 else 200
    count, total = collections.Counter(), collections.Counter()
    for row in csv.DictReader(open(batch)):
        count[row["user_id"]] += 1
        total[row["user_id"]] += int(row["refund_amt"])
    for line in open(events):
        e = json.loads(line)
        count[e["user_id"]] += 1
        total[e["user_id"]] += e["refund_amt"]
    users = sorted(count)
    keys = users[:: max(1, len(users) // sample)]
    body = json.dumps([{"user_id": k} for k in keys]).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    results = json.load(urllib.request.urlopen(req, timeout=30))["results"]
    for key, res in zip(keys, results):
        f = res.get("features") or {}
        got = (f.get("refund_amt_count_30d"), f.get("refund_amt_sum_30d"))
        if got != (count[key], total[key]):
            sys.exit(f"{label}: user {key}: served count/sum 30d {got}, "
                     f"batch + stream say {(count[key], total[key])} ({res})")
    print(f"{label}: {len(keys)} users' 30-day count and sum = batch + streamed events")


if __name__ == "__main__":
    main()
