-- wrk script: the benchmark's request mix, generated in wrk's own Lua so the generator is C.
--
--   wrk -t1 -c64 -d15s -s load/wrk_mix.lua http://127.0.0.1:8080 -- realistic [users] [seed]
--   wrk -t1 -c64 -d15s -s load/wrk_mix.lua http://127.0.0.1:8080 -- decide    [users] [seed]
--   wrk ... -- location [users] [seed]   /   wrk ... -- events [users] [seed]
--
-- `realistic` is load/mix.py's mix: 70 % decide, 20 % event batches of 8, 10 % location fixes
-- in the box the benchmark's 200 fences are scattered over. `decide` is decide-only, the
-- request the bare aiohttp endpoint (load/bare.py) mimics. `location` and `events` send only
-- that one kind (the flame graphs of docs/performance.md profile each route alone). Bodies carry current timestamps
-- (os.time() has whole seconds, well inside the service's 1 h future / 7 day past window) and
-- every event batch its own batch_id, so none is refused as stale or as a replay.
-- At the end one line `WRK_JSON {...}` gives the counts load/wrk.py reads, errors included:
-- wrk counts a status >= 400 as a `status` error.

local TRIGGERS = { "open", "open", "return", "timer", "scroll", "scroll", "pull" }
local EVENT_TYPES = { "impression", "impression", "impression", "click", "scroll", "open", "feedback" }
local SLOTS = { "feed", "nearby", "services", "offers" }
local SLOTS_JSON = '["feed","nearby","services","offers"]'
local HEADERS = { ["Content-Type"] = "application/json" }
local LAT0, LNG0, SPAN = 31.2304, 121.4737, 0.2

local threads = {}
local started = tostring(os.time())

function setup(thread)
    thread:set("tid", #threads)
    thread:set("run_id", started)
    table.insert(threads, thread)
end

local mode, users, batch = "realistic", 10000, 0

function init(args)
    mode = args[1] or "realistic"
    users = tonumber(args[2] or "10000")
    local seed = tonumber(args[3] or "0")
    if mode ~= "realistic" and mode ~= "decide" and mode ~= "location" and mode ~= "events" then
        error("mode must be realistic, decide, location or events, not " .. mode)
    end
    math.randomseed(seed * 1000 + (tid or 0) + os.time())
end

local function pick(list)
    return list[math.random(#list)]
end

local function decide(uid, now)
    return wrk.format("POST", "/v1/decide", HEADERS, string.format(
        '{"user_id":"%s","ts":%d,"trigger":"%s","slots":%s}', uid, now, pick(TRIGGERS), SLOTS_JSON))
end

local function events(uid, now)
    batch = batch + 1
    local parts = {}
    for i = 1, 8 do
        parts[i] = string.format('{"type":"%s","ts":%d,"item_id":"i%d","slot":"%s"}',
            pick(EVENT_TYPES), now - math.random(0, 59999), math.random(0, 4999), pick(SLOTS))
    end
    return wrk.format("POST", "/v1/events", HEADERS, string.format(
        '{"user_id":"%s","batch_id":"wb-%s-%d-%d","events":[%s]}',
        uid, run_id, tid or 0, batch, table.concat(parts, ",")))
end

local function location(uid, now)
    return wrk.format("POST", "/v1/location", HEADERS, string.format(
        '{"user_id":"%s","ts":%d,"lat":%.6f,"lng":%.6f,"accuracy_m":%.1f}', uid, now,
        LAT0 + (math.random() - 0.5) * SPAN, LNG0 + (math.random() - 0.5) * SPAN,
        5 + math.random() * 35))
end

function request()
    local uid = "lt-" .. math.random(0, users - 1)
    local now = os.time() * 1000
    if mode == "decide" then
        return decide(uid, now)
    elseif mode == "location" then
        return location(uid, now)
    elseif mode == "events" then
        return events(uid, now)
    end
    local r = math.random()
    if r < 0.7 then
        return decide(uid, now)
    elseif r < 0.9 then
        return events(uid, now)
    end
    return location(uid, now)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
        '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
        e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
