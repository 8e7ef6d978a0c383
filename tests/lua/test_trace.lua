-- test_trace: concur run --trace writes what every thread did as Chrome trace-event JSON (core/trace.c)
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local traced = T.traced

local function select(events, pred)
  local got = {}
  for _, e in ipairs(events) do
    if pred(e) then got[#got + 1] = e end
  end
  table.sort(got, function(a, b) return a.ts < b.ts end)
  return got
end

local function named(events, ph, name)
  return select(events, function(e) return e.ph == ph and e.name == name end)
end

-- Three parties of a kind (processes, threads, threads of a process) take
-- a named Lock in turn and hold it while they sleep: three holds that
-- never overlap, the waits of the two that came later, each ended by a
-- flow from the wake-up of the release before it.
local TOILET = [[
local concur = require "concur"
local kind = %q
local lock = concur.Lock{name = "toilet"}
local started = concur.Event{name = "in"}
local function visit()
  local _ <close> = lock:hold()
  started:set()
  concur.sleep(0.05)
end
local function party(fn)
  if kind == "thread" then return concur.Thread{target = fn} end
  if kind == "process" then return concur.Process{target = fn} end
  return concur.Process{target = function()
    local t = concur.Thread{target = fn}
    t:start(); t:join()
  end}
end
local ps = {}
local first = party(visit)
first:start()
started:wait()
for i = 1, 2 do ps[i] = party(visit); ps[i]:start() end
first:join()
for _, p in ipairs(ps) do p:join() end
]]

for _, kind in ipairs(T.PARTIES) do
  T.test(("a Lock's holds, waits and wake-ups [%s]"):format(kind), function()
    local code, err, ev = traced(TOILET:format(kind))
    T.eq(code, 0, "exit status\n" .. err)
    local holds = named(ev, "X", "holds Lock 'toilet'")
    T.eq(#holds, 3, "holds")
    local who = {}
    for i, h in ipairs(holds) do
      assert(h.dur >= 45000, "a hold lasts its sleep: " .. h.dur)
      if i > 1 then
        local prev = holds[i - 1]
        assert(h.ts >= prev.ts + prev.dur, "holds overlap")
      end
      who[h.pid .. ":" .. h.tid] = true
      assert(not h.args, "a hold that ended says nothing more")
    end
    local n = 0
    for _ in pairs(who) do n = n + 1 end
    T.eq(n, 3, "holders")
    local waits = named(ev, "X", "waits to acquire Lock 'toilet'")
    T.eq(#waits, 2, "waits")
    local starts, ends = {}, {}
    for _, e in ipairs(ev) do
      if e.ph == "s" then starts[e.id] = e end
      if e.ph == "f" then ends[e.id] = e end
    end
    for _, w in ipairs(waits) do
      assert(w.args.where:find("%.lua:6$"), w.args.where)
      -- The flow that ended it starts in another party's wake-up.
      local f
      for id, e in pairs(ends) do
        if e.pid == w.pid and e.tid == w.tid and e.ts >= w.ts and e.ts <= w.ts + w.dur then
          f = id
        end
      end
      assert(f, "a flow ends in the wait")
      assert(starts[f], "the flow starts somewhere")
      assert(starts[f].tid ~= w.tid, "in another thread")
    end
    -- Every thread and process is named.
    local pnames, tnames = {}, 0
    for _, e in ipairs(ev) do
      if e.ph == "M" and e.name == "process_name" then pnames[e.args.name] = true end
      if e.ph == "M" and e.name == "thread_name" then tnames = tnames + 1 end
    end
    assert(pnames.MainProcess, "MainProcess named")
    T.eq(tnames, kind == "thread" and 4 or kind == "process" and 4 or 7, "threads named")
    T.eq(#named(ev, "i", "sets Event 'in'"), 3, "the Event's sets")
  end)
end

T.test("a Semaphore's value and a Queue's length are counters", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local s = concur.Semaphore(2, {name = "rooms"})
    s:acquire(); s:acquire(); s:release(); s:release()
    local q = concur.Queue(0, {name = "orders"})
    q:put(1); q:put(2); q:get(); q:get()
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local values = {}
  for _, e in ipairs(named(ev, "C", "Semaphore 'rooms'")) do values[#values + 1] = ("%d"):format(e.args.value) end
  T.eq(table.concat(values, " "), "1 0 1 2", "the semaphore's values")
  local lengths = {}
  for _, e in ipairs(named(ev, "C", "Queue 'orders'")) do lengths[#lengths + 1] = ("%d"):format(e.args.length) end
  T.eq(table.concat(lengths, " "), "1 2 1 0", "the queue's lengths")
  T.eq(#named(ev, "i", "puts on Queue 'orders'"), 2, "puts")
  T.eq(#named(ev, "i", "gets from Queue 'orders'"), 2, "gets")
  local main
  for _, e in ipairs(ev) do
    if e.ph == "M" and e.name == "process_name" and e.args.name == "MainProcess" then main = e.pid end
  end
  for _, e in ipairs(select(ev, function(e) return e.ph == "C" end)) do
    T.eq(e.pid, main, "counters are on the main process's track")
  end
end)

T.test("a deadlock's waits and holds last to the end of the run", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local a, b = concur.Lock{name = "A"}, concur.Lock{name = "B"}
    local ready = concur.Barrier(2)
    local function take(x, y)
      local _x <close> = x:hold()
      ready:wait()
      local _y <close> = y:hold()
    end
    local t = concur.Thread{target = take, args = {a, b}}
    t:start()
    take(b, a)
  ]])
  T.eq(code, 3, "exit status\n" .. err)
  for _, name in ipairs{"holds Lock 'A'", "holds Lock 'B'", "waits to acquire Lock 'A'",
                        "waits to acquire Lock 'B'"} do
    local got = named(ev, "X", name)
    T.eq(#got, 1, name)
    T.eq(got[1].args.ended, false, name .. " never ended")
  end
  local wait = named(ev, "X", "waits to acquire Lock 'A'")[1]
  assert(wait.args.where:find("%.lua:7$"), wait.args.where)
end)

T.test("pool tasks, sleeps, forks, exits and reaps", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local pool = concur.Pool(2)
    local function square(x) return x * x end
    assert(pool:apply(square, {3}) == 9)
    pool:close(); pool:join()
    concur.sleep(0.01)
    local p = concur.Process{name = "Worker", target = function() os.exit(7) end}
    p:start(); p:join()
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local tasks = select(ev, function(e) return e.cat == "task" end)
  T.eq(#tasks, 1, "tasks")
  assert(tasks[1].name:find("^task .*%.lua:3$"), tasks[1].name)
  local sleeps = named(ev, "X", "sleeps")
  T.eq(#sleeps, 1, "sleeps")
  assert(sleeps[1].dur >= 9000 and sleeps[1].args.where:find("%.lua:6$"), "the sleep")
  T.eq(#named(ev, "i", "starts Worker"), 1, "fork")
  local reaps = named(ev, "i", "reaps Worker")
  T.eq(#reaps, 1, "reap")
  T.eq(reaps[1].args.exitcode, 7, "its exit code")
  T.eq(#named(ev, "i", "exits 7"), 1, "its exit")
end)

T.test("a Lock released by another thread ends its holder's hold there", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local sig = concur.Lock{name = "sig"}
    sig:acquire()
    local t = concur.Thread{target = function() concur.sleep(0.02); sig:release() end}
    t:start()
    sig:acquire() -- waits for the other thread's release
    sig:release()
    t:join()
    concur.sleep(0.05)
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local holds = named(ev, "X", "holds Lock 'sig'")
  T.eq(#holds, 2, "holds")
  for _, h in ipairs(holds) do
    assert(not (h.args and h.args.ended == false), "every hold ended")
  end
  assert(holds[1].dur >= 15000 and holds[1].dur < 45000, "the first ends at the release: " ..
         holds[1].dur)
end)

T.test("one wake-up of many waiters: an arrow to each, from the wake-up", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local e = concur.Event{name = "go"}
    local ready = concur.Semaphore(0)
    local ps = {}
    for i = 1, 3 do
      ps[i] = concur.Process{target = function() ready:release(); e:wait() end}
      ps[i]:start()
    end
    for _ = 1, 3 do ready:acquire() end
    concur.sleep(0.05) -- all three asleep in their waits
    e:set()
    for _, p in ipairs(ps) do p:join() end
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local waits = named(ev, "X", "waits on Event 'go'")
  T.eq(#waits, 3, "waits")
  local s, f = {}, {}
  for _, x in ipairs(ev) do
    if x.ph == "s" then s[x.id] = x end
    if x.ph == "f" then
      T.eq(f[x.id], nil, "one end for each arrow")
      f[x.id] = x
    end
  end
  local to_waits = 0
  for id, x in pairs(f) do
    assert(s[id], "each arrow starts")
    assert(s[id].ts <= x.ts, "and starts before it ends")
    for _, w in ipairs(waits) do
      if x.pid == w.pid and x.ts >= w.ts and x.ts <= w.ts + w.dur then to_waits = to_waits + 1 end
    end
  end
  T.eq(to_waits, 3, "an arrow to each wait")
end)

T.test("names are valid UTF-8 JSON; a Condition's lock waits under the Condition's name", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local c = concur.Condition(nil, {name = "cv"})
    local l = concur.Lock{name = "\xf8\x80\x80 \xed\xa0\x80 ok \xc3\xa9"}
    l:acquire(); l:release()
    c:acquire()
    local t = concur.Thread{target = function() c:acquire(); c:release() end}
    t:start()
    concur.sleep(0.05)
    c:release()
    t:join()
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(#named(ev, "X", "holds Lock '\u{fffd}\u{fffd}\u{fffd} \u{fffd}\u{fffd}\u{fffd} ok \u{e9}'"),
       1, "each byte that is not UTF-8 replaced")
  T.eq(#named(ev, "X", "waits to acquire Condition 'cv'"), 1, "the Condition's name")
end)

T.test("threads of one process waiting for the GIL", function()
  local code, err, ev = traced([[
    local concur = require "concur"
    local function spin() local t = concur.time() while concur.time() - t < 0.05 do end end
    local ts = {}
    for i = 1, 2 do ts[i] = concur.Thread{target = spin}; ts[i]:start() end
    for _, t in ipairs(ts) do t:join() end
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local gil = select(ev, function(e) return e.cat == "gil" end)
  assert(#gil >= 2, "CPU-bound threads take turns: " .. #gil)
  for _, e in ipairs(ev) do
    if e.ph == "s" then
      local ended = false
      for _, x in ipairs(ev) do ended = ended or (x.ph == "f" and x.id == e.id) end
      assert(ended, "no arrow is left without its end")
    end
  end
end)

T.test("a trace that cannot be written stops the run before it starts", function()
  local code, out, err = T.sh(bin .. " run " .. T.script("print('ran')") ..
                              " --trace /nonexistent/dir/t.json")
  T.eq(code, 2, "exit status")
  T.eq(out, "", "nothing ran")
  assert(err:find("cannot write the trace '/nonexistent/dir/t.json': No such file or directory",
                  1, true), err)
  code, _, err = T.sh(bin .. " run " .. T.script("") .. " --trace")
  T.eq(code, 2, "exit status")
  assert(err:find("--trace takes a file", 1, true), err)
end)

T.done()
