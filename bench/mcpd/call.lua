-- wrk script: one MCP tools/call per request, a point lookup of a random
-- transaction by primary key. Environment:
--   BENCH_STYLE  sluice (run_query, bound parameter), sluice-literal
--                (run_query, id in the SQL text), execute_sql (peers),
--                static (the nginx ceiling: same request, fixed answer)
--   BENCH_ROWS   highest transaction id
--   BENCH_KEY, BENCH_SESSION   bearer key and MCP session (sluice only)
-- Every answer is checked: a non-200 status or a body without a
-- successful result counts as an error, and done() prints one JSON line.
local style = os.getenv("BENCH_STYLE") or "sluice"
local rows = tonumber(os.getenv("BENCH_ROWS") or "1000")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed * 7919 + os.time())
  errors = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  if style == "sluice" or style == "sluice-literal" then
    wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
    wrk.headers["Mcp-Session-Id"] = os.getenv("BENCH_SESSION")
    wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
  end
end

local select = "SELECT id, account_id, amount_cents, merchant FROM transactions WHERE id = "

function request()
  local id = math.random(1, rows)
  local call
  if style == "sluice" then
    call = '{"name":"run_query","arguments":{"sql":"' .. select .. '?","params":[' .. id .. ']}}'
  elseif style == "sluice-literal" then
    call = '{"name":"run_query","arguments":{"sql":"' .. select .. id .. '"}}'
  else
    call = '{"name":"execute_sql","arguments":{"sql":"' .. select .. id .. '"}}'
  end
  return wrk.format(nil, nil, nil,
    '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/call","params":' .. call .. '}')
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"result"', 1, true) or body:find('"isError":true', 1, true)
     or not body:find('account_id', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local errs = 0
  for _, t in ipairs(threads) do errs = errs + t:get("errors") end
  local secs = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"errors":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errs + summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
