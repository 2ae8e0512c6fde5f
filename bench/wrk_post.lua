-- wrk script: POST one JSON body (path in the WRK_BODY environment variable, default
-- ../shared/bench/request.json) with Content-Type application/json, and print the
-- figures bench_http.py reads (one "key value" per line after a marker).
--
--   WRK_BODY=/work/shared/bench/request.json wrk -t2 -c16 -d15s -s bench/wrk_post.lua \
--       http://127.0.0.1:8000/v1/recommendations

local path = os.getenv("WRK_BODY") or "../shared/bench/request.json"
local file = assert(io.open(path, "rb"), "cannot open request body " .. path)
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local api_key = os.getenv("WRK_API_KEY")  -- a shop's key, for keyed runs (bench_load.py --keyed)
if api_key and api_key ~= "" then
   wrk.headers["X-API-Key"] = api_key
end

-- With WRK_COUNT_STATUSES=1, every answer's status is counted (bench_load.py's fault runs);
-- off by default, since a Lua call per response slows wrk itself.
local threads = {}
if os.getenv("WRK_COUNT_STATUSES") == "1" then
   function setup(thread)
      table.insert(threads, thread)
   end
   function init(args)
      statuses = {}
   end
   function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write("--- formwise-bench ---\n")
   io.write(string.format("requests %d\n", summary.requests))
   io.write(string.format("duration_us %d\n", summary.duration))
   io.write(string.format("rps %.2f\n", summary.requests / (summary.duration / 1e6)))
   io.write(string.format("status_ge_400 %d\n", errors.status))
   io.write(string.format("socket_errors %d\n", errors.connect + errors.read + errors.write + errors.timeout))
   io.write(string.format("connect_errors %d\n", errors.connect))
   io.write(string.format("read_errors %d\n", errors.read))
   io.write(string.format("write_errors %d\n", errors.write))
   io.write(string.format("timeouts %d\n", errors.timeout))
   io.write(string.format("latency_p50_us %d\n", latency:percentile(50)))
   io.write(string.format("latency_p99_us %d\n", latency:percentile(99)))
   io.write(string.format("latency_mean_us %.1f\n", latency.mean))
   local totals = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         totals[status] = (totals[status] or 0) + count
      end
   end
   for status, count in pairs(totals) do
      io.write(string.format("status_%d %d\n", status, count))
   end
end
