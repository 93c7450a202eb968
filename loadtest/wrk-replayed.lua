-- wrk script: POST one fixed certificate to cyberid's /v1/verify with a platform API key.
--
-- The node answers the first request `valid` and every later one `replayed`: the load that
-- `cyberid-loadtest --mix replayed=1` sends, so the two tools can be compared on the same work
-- (decode, signature check, revocation and nonce lookups; no durable write).
--
--   CYBERID_API_KEY=cyp_... CYBERID_CERTIFICATE='WZ1:...' \
--     wrk -t1 -c16 -d10s --latency -s loadtest/wrk-replayed.lua http://127.0.0.1:8080
--
-- The certificate travels in a JSON string, as the harness sends it; its base45 text has no
-- character JSON would escape. wrk does not look at the answers beyond their status: the
-- harness is what checks verdicts.

local key = os.getenv("CYBERID_API_KEY")
local certificate = os.getenv("CYBERID_CERTIFICATE")
if key == nil or key == "" or certificate == nil or certificate == "" then
  error("set CYBERID_API_KEY (a platform key with the verify scope) and CYBERID_CERTIFICATE")
end

wrk.method = "POST"
wrk.path = "/v1/verify"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"certificate":"' .. certificate .. '"}'
