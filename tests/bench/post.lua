-- wrk script for the mcpx benchmarks: POST one fixed JSON-RPC body (read from
-- the file in $BENCH_BODY) with the headers an MCP client sends, and print a
-- machine-readable summary line (WRKJSON {...}) that tests/bench/bench.py reads.
-- $BENCH_TOKEN, when set, is sent as a bearer token (every variant gets the
-- same request bytes; only the full gateway checks it).

local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"), "BENCH_BODY must name the request body file")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

-- $BENCH_FRESH_IDS=1: every request gets its own JSON-RPC id (the first
-- "id":N of the body becomes a counter), as a real client numbers its
-- requests, so no two answers are byte for byte the same.
if os.getenv("BENCH_FRESH_IDS") == "1" then
  assert(string.find(wrk.body, '"id":%d+'), 'BENCH_FRESH_IDS needs a body with "id":N')
  local template, counter = wrk.body, 0
  request = function()
    counter = counter + 1
    local body = string.gsub(template, '"id":%d+', '"id":' .. counter, 1)
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
