-- wrk script for bench/ingest.py: POST events with distinct event ids over many lead ids.
-- Arguments after "--": nonce, number of leads, base64 Basic credentials ("" for none), path, and events per
-- request (0: one event per POST /ingest; N: {"events": [N events]} per POST /ingest/batch).
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  nonce = args[1]
  leads = tonumber(args[2])
  path = args[4]
  per = tonumber(args[5] or "0")
  n = 0
  math.randomseed(tid * 7919 + os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[3] ~= nil and args[3] ~= "" then
    wrk.headers["Authorization"] = "Basic " .. args[3]
  end
end

local function event()
  n = n + 1
  return string.format('{"lead_id":"lead-%d","event_type":"page_view","event_id":"%s-%d-%d","metadata":{"url":"/pricing"}}',
    math.random(0, leads - 1), nonce, tid, n)
end

function request()
  if per == 0 then
    return wrk.format("POST", path, nil, event())
  end
  local parts = {}
  for i = 1, per do
    parts[i] = event()
  end
  return wrk.format("POST", path, nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
