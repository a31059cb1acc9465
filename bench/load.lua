-- wrk script of bench/load.sh: every request POSTs the same payload with the
-- svix headers load.sh obtained from `loadserver -sign` just before the run.
local f = assert(io.open(os.getenv("LOAD_BODY"), "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["svix-id"] = assert(os.getenv("LOAD_SVIX_ID"))
wrk.headers["svix-timestamp"] = assert(os.getenv("LOAD_SVIX_TIMESTAMP"))
wrk.headers["svix-signature"] = assert(os.getenv("LOAD_SVIX_SIGNATURE"))
