#!/usr/bin/env python3
"""Render load.sh JSON lines (files or stdin) as a markdown table."""
import fileinput, json

print("| label | conns | rps | p50 ms | p99 ms | p99.9 ms | non2xx | sock err | load1 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in fileinput.input():
    if line.startswith("{"):
        d = json.loads(line)
        print(f"| {d['label']} | {d['connections']} | {d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} "
              f"| {d['p999_ms']:.2f} | {d['non2xx']} | {d['socket_errors']} | {d['loadavg1']} |")
