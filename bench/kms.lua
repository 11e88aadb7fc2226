-- wrk script for the KMS benchmark: one request shape per run, configured by environment.
--   BENCH_TOKEN      X-Vault-Token
--   BENCH_METHOD     GET | PUT | POST
--   BENCH_BODY_FILE  request body (optional)
--   BENCH_UNIQUE=1   append -<thread>-<n> to the path (a new key per request)
local token = os.getenv("BENCH_TOKEN") or ""
local method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
local unique = os.getenv("BENCH_UNIQUE") == "1"
local body = nil
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
end

function request()
  local path = wrk.path
  if unique then
    counter = counter + 1
    path = path .. "-" .. thread_id .. "-" .. counter
  end
  local headers = {
    ["X-Vault-Token"] = token,
    ["X-Vault-Request"] = "true",
  }
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(50), latency:percentile(99)))
end
