#!/usr/bin/env python3
"""Print the streaming benchmark's results (JSON lines from bench/stream.sh) as tables with ratios.

usage: table.py <results.jsonl>
"""
import json
import sys


def fmt(v):
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    produce = [r for r in rows if r["bench"] == "produce"]
    ingest = [r for r in rows if r["bench"] == "ingest"]
    feast = [r for r in rows if r["bench"] == "feast-push"]
    fresh = [r for r in rows if r["bench"] == "freshness"]

    if produce:
        rates = sorted(r["events_per_s"] for r in produce)
        print(f"producer into tansu ({produce[0]['client']}, {produce[0]['partitions']} partitions): "
              f"{rates[len(rates) // 2]:,} events/s median of {len(rates)} runs ({rates[0]:,}..{rates[-1]:,})\n")

    feast_best = {}
    for r in feast:
        if r["batch"] > 1:
            feast_best[r["store"]] = max(feast_best.get(r["store"], 0), r["events_per_s"])
    peer = {"embedded": "sqlite", "redis": "redis"}
    print("| writer | store | events | seconds | events/s | vs Feast's fastest push, same kind of store |")
    print("|---|---|---:|---:|---:|---:|")
    for r in ingest:
        store = r["label"].split("-")[-1]
        other = feast_best.get(peer.get(store, ""))
        ratio = f"{r['events_per_s'] / other:.1f}x" if other else "-"
        steady = f" (steady {r['steady_events_per_s']:,}/s)" if r.get("steady_events_per_s") else ""
        if r.get("consumer_cpu_s") is not None and r.get("broker_cpu_s") is not None:
            us = r["consumer_cpu_s"] / r["records"] * 1e6
            steady += (f"; CPU s: consumer {r['consumer_cpu_s']} ({us:.1f} µs/event), tansu {r['broker_cpu_s']} "
                       f"({r['broker_cpu_s'] / r['records'] * 1e6:.1f} µs/record)")
        print(f"| chronoflow consumer{steady} | {store} | "
              f"{r['records']:,} | {r['seconds']} | {r['events_per_s']:,} | {ratio} |")
    for r in feast:
        how = f"push of {r['batch']:,} rows" if r["batch"] > 1 else "push of 1 row"
        best = feast_best.get(r["store"])
        ratio = f"{r['events_per_s'] / best:.2f}x" if best and r["batch"] > 1 else "-"
        print(f"| Feast {how} (p50 {r['push_ms_p50']} ms, p99 {r['push_ms_p99']} ms a push) | {r['store']} | "
              f"{r['events']:,} | {r['seconds']} | {r['events_per_s']:,} | {ratio} |")

    if fresh:
        print("\n| server | target events/s | achieved | samples served | p50 ms | p99 ms | max ms | not served in 30 s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in fresh:
            print(f"| {r['label']} | {r['rate']:,} | {r['achieved_rate']:,} | {r['served']}/{r['samples']} | "
                  f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['not_served_in_30s']} |")
    skipped = [r for r in rows if r["bench"] == "skipped"]
    for r in skipped:
        print(f"\nskipped: {r['what']}: {r['why']}")


if __name__ == "__main__":
    main()
