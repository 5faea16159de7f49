-- wrk script for bench/flood.sh: every request carries the headers given in
-- the environment (WRK_AUTH, WRK_XFF), paced by WRK_DELAY_MS; done() prints the p95 latency in ms
-- and the responses by status class, which wrk does not report itself.
local auth = os.getenv("WRK_AUTH")
local xff = os.getenv("WRK_XFF")
-- WRK_DELAY_MS paces each connection: it waits that long after each answer
-- before its next request (0: as fast as the answers come).
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init()
	wrk.headers["Authorization"] = auth
	wrk.headers["X-Forwarded-For"] = xff
	counts = {}
end

function delay()
	return pause
end

function response(status)
	local class = math.floor(status / 100) .. "xx"
	if status == 429 or status == 401 then
		class = tostring(status)
	end
	counts[class] = (counts[class] or 0) + 1
end

function done(summary, latency)
	local total = {}
	for _, t in ipairs(threads) do
		for class, n in pairs(t:get("counts")) do
			total[class] = (total[class] or 0) + n
		end
	end
	local parts = {}
	for class, n in pairs(total) do
		table.insert(parts, class .. "=" .. n)
	end
	table.sort(parts)
	io.write(string.format("p95_ms=%.2f requests=%d %s\n", latency:percentile(95) / 1000, summary.requests, table.concat(parts, " ")))
end
