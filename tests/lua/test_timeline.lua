-- test_timeline: concur timeline draws a trace as swimlanes (bindings/host/timeline.lua)
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

-- The toilet lesson's trace (three processes, one Lock, at time scale 0.1),
-- checked in with its charts: the renderer is tested on a fixed trace.
T.test("the toilet's trace gives its checked-in chart, in 80 and in 50 columns", function()
  local code, out, err = T.sh(bin .. " timeline tests/lua/data/toilet.trace.json")
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, read("tests/lua/data/toilet.timeline.txt"), "the chart")
  for line in out:gmatch("[^\n]+") do assert(#line <= 80, "80 columns: " .. line) end
  code, out = T.sh(bin .. " timeline tests/lua/data/toilet.trace.json --width 50")
  T.eq(code, 0, "exit status")
  T.eq(out, read("tests/lua/data/toilet.timeline-50.txt"), "the chart in 50 columns")
  for line in out:gmatch("[^\n]+") do assert(#line <= 50, "50 columns: " .. line) end
end)

-- A trace made by hand, 0 to 60 us in 60 columns of 1 us (width 60 + the
-- labels): each rule of the glyphs shows in its own place.
local HAND = [[
{"traceEvents":[
{"ph":"M","pid":1,"tid":1,"name":"process_name","args":{"name":"MainProcess"}},
{"ph":"M","pid":1,"tid":1,"name":"thread_name","args":{"name":"MainThread"}},
{"ph":"M","pid":1,"tid":2,"name":"thread_name","args":{"name":"T"}},
{"ph":"M","pid":5,"tid":5,"name":"process_name","args":{"name":"P"}},
{"ph":"M","pid":5,"tid":5,"name":"thread_name","args":{"name":"MainThread"}},
{"ph":"X","pid":1,"tid":1,"ts":0,"dur":60,"cat":"thread","name":"MainThread"},
{"ph":"X","pid":1,"tid":1,"ts":10,"dur":20,"cat":"hold","name":"holds Lock 'A'"},
{"ph":"X","pid":1,"tid":1,"ts":15,"dur":10,"cat":"sleep","name":"sleeps"},
{"ph":"X","pid":1,"tid":1,"ts":40,"dur":10,"cat":"wait","name":"waits on Event 'e'"},
{"ph":"X","pid":1,"tid":2,"ts":20,"dur":20,"cat":"thread","name":"T"},
{"ph":"X","pid":1,"tid":2,"ts":20,"dur":20,"cat":"hold","name":"holds Lock 'B'"},
{"ph":"X","pid":1,"tid":2,"ts":25,"dur":5,"cat":"wait","name":"waits to acquire Lock 'A'"},
{"ph":"X","pid":5,"tid":5,"ts":50,"dur":0.2,"cat":"thread","name":"MainThread"},
{"ph":"X","pid":1,"tid":1,"ts":52,"dur":4,"cat":"gil","name":"waits for the GIL"},
{"ph":"C","pid":1,"tid":0,"ts":0,"name":"Semaphore 'rooms'","args":{"value":2}},
{"ph":"C","pid":1,"tid":0,"ts":30.5,"name":"Semaphore 'rooms'","args":{"value":12}},
{"ph":"C","pid":1,"tid":0,"ts":45,"name":"Semaphore 'rooms'","args":{"value":0}}
]}
]]

T.test("glyphs: a hold shows over a sleep, a wait over a hold, a short life still shows", function()
  local path = T.file(HAND, ".json")
  local code, out, err = T.sh(bin .. " timeline " .. path .. " --width 80")
  T.eq(code, 0, "exit status\n" .. err)
  local lanes = {}
  for line in out:gmatch("[^\n]+") do
    local label, chart = line:match("^(.-)%s*|(.*)$")
    if label and label ~= "" then lanes[label] = chart end
  end
  -- 80 columns, less the labels (17) and " |": 61 columns of 60/61 us.
  local main = lanes["MainProcess"]
  T.eq(#main, 61, "columns")
  T.eq(main:sub(1, 10), ("="):rep(10), "running")
  T.eq(main:sub(12, 30), ("#"):rep(19), "holding, also while it sleeps")
  T.eq(main:sub(33, 40), ("="):rep(8), "running again")
  T.eq(main:sub(42, 50), ("."):rep(9), "waiting")
  T.eq(main:sub(54, 56), "---", "waiting for the GIL")
  local t = lanes["MainProcess/T"]
  T.eq(t:sub(1, 19), (" "):rep(19), "not alive yet")
  T.eq(t:sub(22, 25), "####", "holding B")
  T.eq(t:sub(27, 30), "....", "waiting for A while it holds B")
  T.eq(t:sub(42), (" "):rep(20), "not alive any more")
  local p = lanes["P"]
  assert(p:find("="), "a life shorter than a column still shows: " .. p)
  local _, n = p:gsub("=", "")
  T.eq(n, 1, "in one column")
  local rooms = lanes["Semaphore 'rooms'"]
  T.eq(rooms:sub(1, 30), ("2"):rep(30), "a counter's value")
  T.eq(rooms:sub(32, 45), ("+"):rep(14), "above 9")
  T.eq(rooms:sub(47), ("0"):rep(15), "and back to 0")
  assert(out:find("= running  # holding a lock  . waiting  - waiting for the GIL  z sleeping",
                  1, true), out)
  assert(out:find("0-9 a counter's value", 1, true), out)
end)

T.test("run --timeline draws the run's chart after its output", function()
  local code, out, err = T.sh(bin .. " run scripts/locks/toilet.lua --time-scale 0.05 --timeline" ..
                              " --width 60")
  T.eq(code, 0, "exit status\n" .. err)
  assert(out:find("^(%d) in\n%1 out\n(%d) in\n%2 out\n(%d) in\n%3 out\nMainProcess "), out)
  local holders = 0
  for line in out:gmatch("[^\n]+") do
    assert(#line <= 60, "60 columns: " .. line)
    if line:find("^Process%-%d +|") and line:find("#") then holders = holders + 1 end
  end
  T.eq(holders, 3, "three lanes hold the lock")
  -- Its trace was a scratch file, gone after.
  code, out, err = T.sh(bin .. " run " .. T.script("") .. " --width 60")
  T.eq(code, 2, "exit status")
  assert(err:find("give --timeline too", 1, true), err)
end)

T.test("events it cannot use are passed over, not a crash", function()
  local path = T.file([[
{"traceEvents":[
{"ph":"M","pid":1,"tid":1,"name":"process_name"},
{"ph":"M","pid":1,"tid":1,"name":"thread_name","args":{"name":7}},
"not an event", 12, null,
{"ph":"X","pid":1,"tid":1,"ts":0,"cat":"thread","name":"no dur"},
{"ph":"X","pid":1,"tid":1,"ts":0,"dur":"long","cat":"wait","name":"dur a string"},
{"ph":"X","pid":1,"tid":1,"ts":0,"dur":10,"cat":"thread","name":"MainThread"},
{"ph":"C","pid":1,"tid":0,"ts":1,"args":{"value":1}},
{"ph":"C","pid":1,"tid":0,"ts":1,"name":"Queue 'q'","args":{"length":"three"}},
{"ph":"C","pid":1,"tid":0,"ts":2,"name":"Queue 'q'","args":{"length":3}}
]}]], ".json")
  local code, out, err = T.sh(bin .. " timeline " .. path)
  T.eq(code, 0, "exit status\n" .. err)
  assert(out:find("\npid 1 +|=+\n") or out:find("^pid 1 +|=+\n"), out)
  assert(out:find("Queue 'q' | +3+\n"), out)
end)

T.test("bad input is refused with what to do", function()
  local cases = {
    {"", "timeline needs a trace file"},
    {" /nonexistent.json", "cannot read the trace '/nonexistent.json'"},
    {" " .. T.file("{not json", ".json"), "is not JSON"},
    {" " .. T.file("{\"a\": 1}", ".json"), "is not a trace: it has no traceEvents"},
    {" " .. T.file("{\"traceEvents\": []}", ".json"), "has no threads in it"},
    {" tests/lua/data/toilet.trace.json --width 20", "--width takes a number of columns from 40"},
    {" tests/lua/data/toilet.trace.json --width", "--width takes a number of columns from 40"},
    {" tests/lua/data/toilet.trace.json --colour", "unknown option '--colour'"},
  }
  for _, c in ipairs(cases) do
    local code, out, err = T.sh(bin .. " timeline" .. c[1])
    T.eq(code, 2, "exit status of" .. c[1])
    T.eq(out, "", "no chart for" .. c[1])
    assert(err:find(c[2], 1, true), err)
  end
end)

T.done()
