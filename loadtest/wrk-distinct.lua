-- wrk script: POST a distinct valid certificate with every request, each exactly once, so that
-- every answer is a `valid` with its durable nonce write: the node's real work, where
-- wrk-replayed.lua measures only the cheapest path (one certificate, cached tables).
--
--   cyberid-loadtest --data-dir DATA --requests 400000 --write-bodies /tmp/bodies.txt
--   CYBERID_API_KEY=cyp_... CYBERID_BODIES=/tmp/bodies.txt CYBERID_WRK_THREADS=1 \
--     wrk -t1 -c64 -d5s --latency -s loadtest/wrk-distinct.lua http://127.0.0.1:8080
--
-- wrk calls request() once per thread before connecting and discards that request, so each
-- thread's first body is never sent. Each of wrk's threads takes every t-th line of the file. A thread that runs out of bodies
-- starts over (its certificates are then replayed, which is cheaper): `done` says whether that
-- happened, and a run where it did is not a measurement of distinct certificates.

local key = os.getenv("CYBERID_API_KEY")
local path = os.getenv("CYBERID_BODIES")
if key == nil or key == "" or path == nil or path == "" then
  error("set CYBERID_API_KEY (a platform key with the verify scope) and CYBERID_BODIES")
end

-- wrk runs each thread in a Lua state of its own, so the thread count comes from the
-- environment (the same number as -t).
local threads_total = tonumber(os.getenv("CYBERID_WRK_THREADS") or "1")
local threads = {}
local count = 0

function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/v1/verify"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
  bodies = {}
  local index = 0
  for line in io.lines(path) do
    if index % threads_total == id then
      table.insert(bodies, line)
    end
    index = index + 1
  end
  next_body = 1
  wrapped = 0
end

function request()
  local body = bodies[next_body]
  next_body = next_body + 1
  if next_body > #bodies then
    next_body = 1
    wrapped = wrapped + 1
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local wrapped = thread:get("wrapped")
    if wrapped ~= nil and wrapped > 0 then
      io.write("wrk-distinct: a thread ran out of bodies and replayed them; write more\n")
    end
  end
end
