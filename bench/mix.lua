-- The request mix every target gets: mostly reads of one score, some list
-- reads, a few small JSON submissions. BENCH_TOKEN, when set, is sent as a
-- bearer token (the gateway needs it). BENCH_USER, when set, is sent as the
-- identity header the gateway would add (the baselines' backend checks no
-- signature and trusts it), so that every target serves the same answers.
local token = os.getenv("BENCH_TOKEN")
local user = os.getenv("BENCH_USER")
local score_id = os.getenv("BENCH_SCORE_ID") or "unknown"
local n = 0

local function headers(extra)
  local h = { ["Accept"] = "application/json" }
  if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
  if user and user ~= "" then h["X-Auth-User-Id"] = user end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local submit = '{"audio_base64":"UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=","language":"en-US"}'

request = function()
  n = n + 1
  local k = n % 20
  if k == 0 then
    return wrk.format("POST", "/v1/scores", headers({ ["Content-Type"] = "application/json" }), submit)
  elseif k <= 3 then
    return wrk.format("GET", "/v1/users/bench-user/scores?limit=5", headers())
  end
  return wrk.format("GET", "/v1/scores/" .. score_id, headers())
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
