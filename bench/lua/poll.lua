-- Round-robin polls over many pending codes, so that no code is polled
-- faster than its interval (rows 2 and 5).
--   BENCH_GRANT  grant_type of the poll; BENCH_PARAM  the code's parameter
--   BENCH_AUTH   Authorization header value
--   either BENCH_CODES_FILE (one code a line: the peer's device codes)
--   or BENCH_PREFIX + BENCH_COUNT (dtr: bench_seed's predictable codes,
--   PREFIX followed by the index zero-padded to 10 digits).
-- Each wrk thread walks its own slice of the codes.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")

local codes, first, count, i

function init(args)
  local file = os.getenv("BENCH_CODES_FILE")
  local total
  if file and file ~= "" then
    codes = {}
    for line in io.lines(file) do
      if line ~= "" then table.insert(codes, line) end
    end
    total = #codes
  else
    total = tonumber(os.getenv("BENCH_COUNT"))
  end
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local per = math.floor(total / nthreads)
  first = thread_index * per
  count = per
  i = 0
end

local prefix = os.getenv("BENCH_PREFIX") or ""
local body_start = "grant_type=" .. os.getenv("BENCH_GRANT") .. "&" .. os.getenv("BENCH_PARAM") .. "="
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = os.getenv("BENCH_AUTH"),
}

function request()
  local n = first + (i % count)
  i = i + 1
  local code
  if codes then code = codes[n + 1] else code = prefix .. string.format("%010d", n) end
  return wrk.format("POST", "/token", headers, body_start .. code)
end
