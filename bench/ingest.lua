-- wrk script for bench/ingest.sh: POST a KeldairHR event with a fresh `id` on every request.
--
-- Environment (set by ingest.sh):
--   BENCH_PAYLOADS  file of JSON bodies, one per line, each starting {"id":"<uuid>"...
--   BENCH_RUN       small integer naming this run (warm-up, measured, ...), so that ids
--                   never repeat across the runs of one ingest.sh invocation
--
-- Bodies are taken in turn from the file (each thread starts at its own offset) and the
-- line's `id` is replaced by a new UUID v4: 64 random bits at the front (so ids land at
-- random places in an index, as real senders' ids do) and, in the last group, the run,
-- the thread and a per-thread counter, so no two requests of one invocation share an id.
-- done() prints one machine-readable line, WRKRESULT ..., that ingest.sh parses.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local heads, tails, n, pos, counter, tid, run

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  run = tonumber(os.getenv("BENCH_RUN") or "0") % 0x10000
  math.randomseed(os.time() + 7919 * tid + 104729 * run)
  heads, tails, n = {}, {}, 0
  local path = os.getenv("BENCH_PAYLOADS") or error("BENCH_PAYLOADS is not set")
  for line in io.lines(path) do
    local head, tail = line:match('^(%{%s*"id"%s*:%s*")[%x%-]+(".*)$')
    if not head then error("line " .. (n + 1) .. " of " .. path .. " does not start with an id") end
    n = n + 1
    heads[n], tails[n] = head, tail
  end
  if n == 0 then error(path .. " is empty") end
  pos = (tid * 7919) % n
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  pos = pos % n + 1
  counter = counter + 1
  local id = string.format("%08x-%04x-4%03x-%x%03x-%04x%02x%06x",
    math.random(0, 0x7fffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    8 + math.random(0, 3), math.random(0, 0xfff),
    run, tid % 0x100, counter % 0x1000000)
  return wrk.format(nil, nil, nil, heads[pos] .. id .. tails[pos])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
