-- wrk script for bench/ingest.py --batch: POST /ingest/batch with N events per request, distinct ids, many leads.
-- Arguments after "--": nonce, number of leads, base64 Basic credentials, events per request.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  nonce = args[1]
  leads = tonumber(args[2])
  per = tonumber(args[4])
  n = 0
  math.randomseed(tid * 7919 + os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Basic " .. args[3]
end

function request()
  local parts = {}
  for i = 1, per do
    n = n + 1
    parts[i] = string.format('{"lead_id":"lead-%d","event_type":"page_view","event_id":"%s-%d-%d","metadata":{"url":"/pricing"}}',
      math.random(0, leads - 1), nonce, tid, n)
  end
  return wrk.format("POST", "/ingest/batch", nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
