-- wrk script: POST one order per request and print latency percentiles as JSON at the end.
--
-- The body is WRK_ORDER_BODY, which benchmarks/overhead.py sets from stackctl.orders.order_body
-- (the one definition of an order every client of the stack sends).
--
-- With WRK_TRACE_IDS=<path> set, each wrk thread also writes "<status> <trace id>" per response
-- (from the W3C `traceresponse` header) to <path>.<thread number>, so the benchmark can look every
-- trace up in Jaeger afterwards. Without it no response callback runs (no per-response Lua cost).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = assert(os.getenv("WRK_ORDER_BODY"), "set WRK_ORDER_BODY to the order's JSON")

-- With WRK_RATE=<requests per second> set (and WRK_CONNECTIONS, wrk's -c), each connection
-- pauses between a response and its next request, starting at WRK_DELAY_MS; once a second the
-- pause is corrected by half the gap between the rate of the last second and WRK_RATE (wrk is
-- closed-loop: a connection's rate is 1 / (latency + pause)). Run wrk with one thread (-t1).
local target = tonumber(os.getenv("WRK_RATE") or "")
if target ~= nil then
  local connections = assert(tonumber(os.getenv("WRK_CONNECTIONS") or ""), "set WRK_CONNECTIONS")
  local pause = tonumber(os.getenv("WRK_DELAY_MS") or "") or 0
  local second, sent = os.time(), 0

  function delay()
    local now = os.time()
    if now ~= second then
      local rate = sent / (now - second)
      if rate > 0 then
        pause = math.max(0, pause + 0.5 * connections * 1000 * (1 / target - 1 / rate))
      end
      second, sent = now, 0
    end
    sent = sent + 1
    return math.floor(pause + 0.5)
  end
end

local ids_path = os.getenv("WRK_TRACE_IDS")
if ids_path ~= nil and ids_path ~= "" then
  local threads = 0

  function setup(thread)
    threads = threads + 1
    thread:set("thread_number", threads)
  end

  function init(args)
    ids_file = assert(io.open(ids_path .. "." .. thread_number, "w"))
    ids_file:setvbuf("line")
  end

  function response(status, headers, body)
    -- traceresponse: 00-<32 hex trace id>-<16 hex span id>-<flags>
    local value = headers["traceresponse"] or headers["Traceresponse"]
    if value ~= nil then
      ids_file:write(status, " ", string.sub(value, 4, 35), "\n")
    end
  end
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f}\n',
    summary.requests, summary.duration, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
