-- wrk script: POST JSON bodies made from a template, cycling through keys read from a file.
--   wrk -t2 -c8 -d10s --latency -s wrk_post.lua URL -- <body_template_file> <keys_file> [rate_rps threads]
-- The template holds {{KEY}}; the keys file has one integer per line.
-- Each wrk thread has its own Lua state: init() reads both files and prebuilds every full HTTP
-- request, so request() only indexes a table. Threads start at different offsets in the key list.
-- Optional paced mode (rate_rps = total target req/s, threads = wrk -t): delay() spaces each thread's
-- requests rate/threads apart on a schedule. It is still closed-loop per connection: a request goes
-- out only when its connection is free, and wrk times from the send, not from the scheduled slot
-- (no coordinated-omission correction as in wrk2). Use enough connections for the target rate.
-- done() prints one JSON line (latencies in ms; wrk reports microseconds). "non2xx" is wrk's own
-- status counter, which counts status > 399 (3xx would pass; the servers here never send one).

local counter = 0
function setup(thread)          -- runs in the main Lua state, once per thread, before its init()
  counter = counter + 1
  thread:set("tid", counter)
end

local reqs, n, i = {}, 0, 0
local interval_ms, next_ms, now_ms = nil, nil, nil

local function slurp(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local s = f:read("*a"); f:close(); return s
end

-- Paced mode only: wrk checks for a global delay() after init(); if present it arms a timer before
-- every request (even for 0 ms), which would slow the closed-loop mode.
local function paced_delay()
  local now = now_ms()
  -- next slot on this thread's schedule; never bank more than one interval of backlog
  next_ms = math.max((next_ms or now) + interval_ms, now - interval_ms)
  local d = next_ms - now
  return d > 0 and math.floor(d + 0.5) or 0
end

function init(args)
  local tmpl = slurp(args[1]):gsub("%s+$", "")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for key in slurp(args[2]):gmatch("%-?%d+") do
    local body = tmpl:gsub("{{KEY}}", key)
    n = n + 1
    reqs[n] = wrk.format(nil, nil, nil, body)
  end
  assert(n > 0, "no keys in " .. args[2])
  i = ((tid or 1) - 1) * 7919 % n      -- per-thread start offset
  if args[3] and tonumber(args[3]) and tonumber(args[3]) > 0 then
    local ffi = require("ffi")
    ffi.cdef [[ typedef struct { long tv_sec; long tv_nsec; } cf_timespec;
                int clock_gettime(int clk, cf_timespec *tp); ]]
    local ts = ffi.new("cf_timespec")
    now_ms = function() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6 end
    interval_ms = 1000.0 * tonumber(args[4] or 1) / tonumber(args[3])
    delay = paced_delay
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"non2xx":%d,"socket_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"lat_mean_ms":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, secs, summary.requests / secs, e.status,
    e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    latency.mean / 1e3, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3))
end
