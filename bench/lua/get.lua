-- A plain GET of BENCH_PATH (row 4: the metadata document).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
