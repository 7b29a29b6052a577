-- Shared by every bench script: counts answers by kind in each wrk thread
-- and prints one machine-readable RESULT line at the end. Benchmarks are
-- not tests: nothing here judges the numbers, it only reports them.
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

n_ok, n_pending, n_slow, n_other = 0, 0, 0, 0

-- authorization_pending (dtr deferral or peer device code), slow_down,
-- any 2xx (token, metadata, device authorization), anything else.
function response(status, headers, body)
  if body:find("authorization_pending", 1, true) then
    n_pending = n_pending + 1
  elseif body:find("slow_down", 1, true) then
    n_slow = n_slow + 1
  elseif status >= 200 and status < 300 then
    n_ok = n_ok + 1
  else
    n_other = n_other + 1
    -- The first unexpected answer of a thread, so that a broken setup is
    -- visible in the log rather than only as a count.
    if n_other == 1 then
      io.write(string.format("UNEXPECTED %d %s\n", status, body:sub(1, 200)))
    end
  end
end

function done(summary, latency, requests)
  local ok, pending, slow, other = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("n_ok")
    pending = pending + t:get("n_pending")
    slow = slow + t:get("n_slow")
    other = other + t:get("n_other")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d ok=%d pending=%d slow_down=%d other=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, ok, pending, slow, other, e.connect + e.read + e.write + e.timeout))
end
