-- A fixed form POST: BENCH_PATH, BENCH_BODY, BENCH_AUTH (Authorization
-- header value). Rows 1 (client credentials) and 3 (deferred initiation /
-- device authorization).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
