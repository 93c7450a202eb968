-- wrk script: GET an inclusion proof for a random leaf of a log of CYBERID_LOG_SIZE entries
-- (every proof different, each read from the store's tree), as platforms and holders'
-- devices fetch them.
--
--   CYBERID_LOG_SIZE=400000 wrk -t1 -c64 -d5s --latency -s loadtest/wrk-proofs.lua http://127.0.0.1:8080

local size = tonumber(os.getenv("CYBERID_LOG_SIZE") or "")
if size == nil or size < 1 then
  error("set CYBERID_LOG_SIZE to the size of a signed head of the log")
end

function init(args)
  math.randomseed(os.time() + (id or 0))
end

function request()
  local index = math.random(0, size - 1)
  return wrk.format("GET", "/v1/log/proofs/inclusion?index=" .. index .. "&size=" .. size)
end

function response(status, headers, body)
  if status ~= 200 then
    error("proof request answered " .. status .. ": " .. body)
  end
end
