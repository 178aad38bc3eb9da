#!/usr/bin/env bash
# Closed-loop load levels with wrk: one JSON line per connection count.
#   usage: load.sh <url> <body_template_file> <keys_file> <connections...>
#   env: DURATION (default 10s) measured run per level; WARMUP (default 2s) run first, discarded;
#        RATE (optional) total req/s -> paced mode of wrk_post.lua (see its header: rate-limited but
#        closed-loop, no coordinated-omission correction; Debian 12 has no wrk2 and no oha, and oha
#        is not on PyPI/npm either); TIMEOUT (default 10s) wrk's per-request timeout, kept high so
#        slow responses land in the percentiles instead of being dropped as timeouts;
#        LABEL (optional) copied into each line; CPU_PID (optional) the server's pid: its CPU time
#        (user + system, from /proc) over the measured run, per request, lands in "server_cpu_us".
# Threads = min(2, connections): this machine has 2 cores, shared with the server under test.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,11p "$0"; exit 2; }
URL="$1" TMPL="$2" KEYS="$3"; shift 3
LUA="$(cd "$(dirname "$0")" && pwd)/wrk_post.lua"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
cpu_ticks() {  # utime + stime of CPU_PID, in clock ticks
  if [ -n "${CPU_PID:-}" ]; then awk '{print $14 + $15}' "/proc/$CPU_PID/stat"; else echo 0; fi
}
for C in "$@"; do
  T=$(( C < 2 ? C : 2 ))
  EXTRA=(); [ -n "${RATE:-}" ] && EXTRA=("$RATE" "$T")
  run() { wrk -t"$T" -c"$C" -d"$1" --timeout "${TIMEOUT:-10s}" -s "$LUA" "$URL" -- "$TMPL" "$KEYS" ${EXTRA[@]+"${EXTRA[@]}"}; }
  run "${WARMUP:-2s}" >/dev/null
  CPU0=$(cpu_ticks)
  LINE=$(run "${DURATION:-10s}" | grep '^{"requests"' | tail -1)
  CPU1=$(cpu_ticks)
  [ -n "$LINE" ] || { echo "wrk produced no result at c=$C" >&2; exit 1; }
  CPU=null
  if [ -n "${CPU_PID:-}" ]; then
    REQS=$(sed 's/.*"requests":\([0-9]*\).*/\1/' <<<"$LINE")
    CPU=$(( (CPU1 - CPU0) * 1000000 / $(getconf CLK_TCK) / (REQS > 0 ? REQS : 1) ))
  fi
  LOAD1=$(cut -d' ' -f1 /proc/loadavg)   # 1-min load after the run: shows other work on the box
  echo "{\"label\":\"${LABEL:-}\",\"connections\":$C,\"threads\":$T,\"rate_target\":${RATE:-null},\"loadavg1\":$LOAD1,\"server_cpu_us\":$CPU,${LINE#\{}"
done
