-- test_deadlock: every kind of wait that cannot end is reported (core/deadlock.c)
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

-- A run whose other party (a process, a thread, or a thread of a process)
-- waits forever in `wait` (a chunk, with `setup` run first in the main
-- thread, whose objects it sees), while the main thread joins it.
local TEMPLATE = [[
local concur = require "concur"
local kind = %q
%s
local function other()
  %s
end
local function start(fn)
  if kind == "thread" then
    local t = concur.Thread{target = fn}
    t:start()
    return t
  end
  local target = fn
  if kind == "thread of a process" then
    target = function()
      local t = concur.Thread{target = fn}
      t:start()
      t:join()
    end
  end
  local p = concur.Process{target = target}
  p:start()
  return p
end
start(other):join()
]]

-- The waits, each with what its report line says of the party's wait.
local CASES = {
  {"a Lock its joiner holds", [[local x = concur.Lock{name = "x"}; x:acquire()]],
   [[x:acquire()]], "waits to acquire Lock 'x'", "holds Lock 'x'"},
  {"an RLock its joiner holds", [[local x = concur.RLock{name = "x"}; x:acquire()]],
   [[x:acquire()]], "waits to acquire RLock 'x'", "holds RLock 'x'"},
  {"a Semaphore", [[local x = concur.Semaphore(0, {name = "x"})]],
   [[x:acquire()]], "waits to acquire Semaphore 'x'"},
  {"a BoundedSemaphore", [[local x = concur.BoundedSemaphore(1, {name = "x"}); x:acquire()]],
   [[x:acquire()]], "waits to acquire BoundedSemaphore 'x'"},
  {"a Condition", [[local x = concur.Condition(nil, {name = "x"})]],
   [[x:acquire(); x:wait()]], "waits on Condition 'x'"},
  {"a Barrier", [[local x = concur.Barrier(3, {name = "x"})]],
   [[x:wait()]], "waits on Barrier 'x'"},
  {"an Event", [[local x = concur.Event{name = "x"}]],
   [[x:wait()]], "waits on Event 'x'"},
  {"a Queue's get", [[local x = concur.Queue(0, {name = "x"})]],
   [[x:get()]], "waits to get from Queue 'x'"},
  {"a full Queue's put", [[local x = concur.Queue(1, {name = "x"}); x:put(1)]],
   [[x:put(2)]], "waits to put on Queue 'x'"},
  {"a JoinableQueue's join", [[local x = concur.JoinableQueue(0, {name = "x"}); x:put(1)]],
   [[x:join()]], "waits to join JoinableQueue 'x'"},
  {"a Pipe's recv", [[local x, y = concur.Pipe(false)]],
   [[x:recv()]], "waits to receive on Connection %(fd %d+%)"},
  {"a full Pipe's send", [[local x, y = concur.Pipe()]],
   [[local big = ("x"):rep(1 << 16); while true do x:send_bytes(big) end]],
   "waits to send on Connection %(fd %d+%)"},
}

local function plain(s) return (s:gsub("[%(%)%.%%%+%-%*%?%[%]%^%$']", "%%%0")) end

-- Every case of every kind runs at once: each is a run of its own, which
-- spends its time asleep.
local runs = {}
for _, c in ipairs(CASES) do
  for _, kind in ipairs(T.PARTIES) do
    local path = T.script(TEMPLATE:format(kind, c[2], c[3]))
    local err = os.tmpname()
    local f = io.popen(("%s run %s --timeout 30 2>%s"):format(bin, path, err))
    runs[#runs + 1] = {case = c, kind = kind, path = path, err = err, f = f}
  end
end

for _, r in ipairs(runs) do
  local c = r.case
  T.test(("%s that cannot end is reported [%s]"):format(c[1], r.kind), function()
    r.f:read("a")
    local _, _, code = r.f:close()
    local f = io.open(r.err)
    local err = f:read("a")
    f:close()
    os.remove(r.err)
    os.remove(r.path)
    T.eq(code, 3, "exit status\n" .. err)
    assert(err:find("^concur: deadlock: "), err)
    assert(err:find("\nconcur: the run ends %(exit 3%)\n$"), err)
    -- The party's wait, with its place; the main thread's join.
    local at = " at " .. plain(r.path) .. ":%d+"
    assert(err:find(c[4] .. at), c[4] .. "\n" .. err)
    assert(err:find("MainThread of MainProcess %(pid %d+%) [^\n]*waits to join [^\n]+" .. at), err)
    if c[5] then assert(err:find("MainThread of MainProcess %(pid %d+%) " .. plain(c[5])), err) end
    if r.kind == "thread of a process" then
      assert(err:find("MainThread of Process%-1 %(pid %d+%) waits to join Thread%-1" .. at), err)
    end
  end)
end

T.test("a wait for a lock is a cycle; the others are all asleep, each named", function()
  -- Two processes, each holding one named lock and waiting for the other's:
  -- the lesson's processes/deadlock.
  local code, out, err = T.sh(bin .. " run scripts/processes/deadlock.lua --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(out:find("Left has Lock(fork", 1, true) and out:find("Right has Lock(knife", 1, true), out)
  assert(err:find("concur: deadlock: 2 threads wait for each other's locks, forever:\n", 1, true), err)
  assert(err:find("MainThread of Left (pid ", 1, true), err)
  assert(err:find("holds Lock 'fork' and waits to acquire Lock 'knife' at scripts/processes/deadlock.lua:15", 1, true), err)
  assert(err:find("holds Lock 'knife' and waits to acquire Lock 'fork' at scripts/processes/deadlock.lua:15", 1, true), err)
  -- A consumer whose producers all ended: all asleep, the consumer and the
  -- main thread that joins it.
  code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local q = concur.Queue(0, {name = "orders"})
    local producers = {}
    for i = 1, 2 do
      producers[i] = concur.Process{target = function() q:put(i) end}
      producers[i]:start()
    end
    local consumer = concur.Process{name = "Consumer", target = function()
      while true do q:get() end
    end}
    consumer:start()
    for _, p in ipairs(producers) do p:join() end
    consumer:join()
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("concur: deadlock: all 2 threads are asleep, waiting with no timeout:\n", 1, true), err)
  assert(err:find("MainThread of Consumer %(pid %d+%) waits to get from Queue 'orders' at [^\n]+:9\n"), err)
  assert(err:find("MainThread of MainProcess %(pid %d+%) waits to join Consumer %(pid %d+%) at [^\n]+:13\n"), err)
  -- Two threads that join each other: a cycle of joins.
  code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local b -- threads share the Lua state: A sees B once it is set
    local a = concur.Thread{name = "A", target = function()
      while not b do concur.sleep(0.01) end
      b:join()
    end}
    a:start()
    local t = concur.Thread{name = "B", target = function() a:join() end}
    t:start(); b = t -- only once started: a join before the start raises
    while true do concur.sleep(0.05) end
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("concur: deadlock: 2 threads wait for each other, forever:\n", 1, true), err)
  assert(err:find("A of MainProcess %(pid %d+%) waits to join B at [^\n]+:5\n"), err)
  assert(err:find("B of MainProcess %(pid %d+%) waits to join A at [^\n]+:8\n"), err)
end)

T.test("a pool's result that cannot come is reported", function()
  local code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local e = concur.Event{name = "never"}
    local pool = concur.Pool(2)
    print(pool:apply(function(ev) ev:wait(); return 1 end, {e}))
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("concur: deadlock: all 3 threads are asleep, waiting with no timeout:\n", 1, true), err)
  assert(err:find("MainThread of PoolWorker%-%d %(pid %d+%) waits on Event 'never' at [^\n]+:4\n"), err)
  assert(err:find("MainThread of MainProcess %(pid %d+%) waits on the results of a Pool at [^\n]+:4\n"), err)
end)

T.test("under a stock lua5.4 the wait that finds it raises Deadlock", function()
  -- Each wait that answers true or false (Event, JoinableQueue, Thread
  -- join, poll) raises, as a Lock's acquire does.
  local path = T.script([[
    local c = require "concur"
    local e, q = c.Event{name = "e"}, c.JoinableQueue(0, {name = "j"})
    q:put(1)
    local r, w = c.Pipe(false)
    local t = c.Thread{target = function() e:wait() end}
    t:start()
    for _, call in ipairs{function() return e:wait() end, function() return q:join() end,
                          function() return t:join() end, function() return r:poll(nil) end} do
      local ok, err = pcall(call)
      print(ok, c.is(err, "Deadlock"), tostring(err):find("are asleep", 1, true) ~= nil)
    end
    e:set()
    t:join()
  ]])
  local code, out, err = T.lua54(path)
  os.remove(path)
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, ("false\ttrue\ttrue\n"):rep(4))
end)

T.test("waits that something can still end are no deadlock", function()
  -- With a timeout; a party that sleeps and then acts; a process that
  -- computes.
  local code, out, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local e = concur.Event()
    assert(e:wait(1) == false)
    local t = concur.Thread{target = function() concur.sleep(1); e:set() end}
    t:start()
    e:wait()
    t:join()
    local q = concur.Queue()
    local p = concur.Process{target = function()
      local t0 = os.clock()
      while os.clock() - t0 < 1 do end
      q:put("done")
    end}
    p:start()
    print(q:get())
    p:join()
    print("ok")
  ]]) .. " --time-scale 1 --timeout 30")
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "done\nok\n")
end)

T.done()
