-- test_threads: Thread, the GIL, and every primitive between threads.
local concur = require "concur"
local T = dofile("tests/lua/harness.lua")

T.test("200 threads increment a global under a Lock: exact", function()
  n = 0
  local lock = concur.Lock()
  local ts = {}
  for i = 1, 200 do
    ts[i] = concur.Thread{target = function()
      for _ = 1, 50 do
        local _ <close> = lock:hold()
        local v = n
        for _ = 1, 50 do end -- long enough for the hook to ask for a switch
        n = v + 1
      end
    end}
    ts[i]:start()
  end
  for _, t in ipairs(ts) do T.eq(t:join(30), true) end
  T.eq(n, 200 * 50)
end)

T.test("a CPU-bound thread does not starve the others", function()
  local counts, stop = {0, 0, 0, 0}, false
  local ts = {}
  for i = 1, 4 do
    ts[i] = concur.Thread{target = function()
      while not stop do counts[i] = counts[i] + 1 end
    end}
    ts[i]:start()
  end
  -- Counted from when all four run (on a loaded machine the last may start
  -- a good while after the first).
  local t0 = concur.time()
  while (counts[1] == 0 or counts[2] == 0 or counts[3] == 0 or counts[4] == 0)
        and concur.time() - t0 < 10 do
    concur.sleep(0.01)
  end
  local base = {counts[1], counts[2], counts[3], counts[4]}
  concur.sleep(0.5)
  stop = true
  for _, t in ipairs(ts) do t:join() end
  local got, total = {}, 0
  for i = 1, 4 do got[i] = counts[i] - base[i]; total = total + got[i] end
  for i = 1, 4 do
    assert(got[i] >= 0.1 * total, ("thread %d got %.1f%% of the turns"):format(i, 100 * got[i] / total))
  end
end)

T.test("the GIL is handed over from inside coroutines, and coroutines behave as Lua's", function()
  -- Each thread computes inside a coroutine until the other has run: the
  -- request for the GIL must reach the coroutine that runs, or neither ends.
  local seen_a, seen_b, seen_c = false, false, false
  -- Daemons: if they never end, the test fails and the script still ends.
  local a = concur.Thread{daemon = true, target = function()
    coroutine.wrap(function() seen_a = true; while not seen_b do end end)()
  end}
  local b = concur.Thread{daemon = true, target = function()
    local outer = coroutine.create(function()
      local inner = coroutine.wrap(function() seen_b = true; while not (seen_a and seen_c) do end end)
      inner()
    end)
    assert(coroutine.resume(outer))
  end}
  a:start(); b:start()
  -- The main thread too, in a plain loop.
  local t0 = concur.time()
  while not (seen_a and seen_b) and concur.time() - t0 < 20 do end
  T.eq(seen_a and seen_b, true, "both threads ran")
  seen_c = true
  T.eq(a:join(20), true, "thread a ended")
  T.eq(b:join(20), true, "thread b ended")
  -- resume and wrap: values both ways, errors, dead coroutines, close.
  local co = coroutine.create(function(x, y)
    local z = coroutine.yield(x + y, "two")
    return z * 2
  end)
  local ok, s, two = coroutine.resume(co, 1, 2)
  T.eq(ok, true); T.eq(s, 3); T.eq(two, "two")
  T.eq(select(2, coroutine.resume(co, 21)), 42)
  local dead_ok, why = coroutine.resume(co)
  T.eq(dead_ok, false); T.eq(why, "cannot resume dead coroutine")
  local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
  T.eq(gen() + gen() + gen(), 6)
  local f_ok, err = pcall(coroutine.wrap(function() error("boom") end))
  T.eq(f_ok, false)
  assert(tostring(err):find("boom"), tostring(err))
  local closed = false
  local tbc = coroutine.wrap(function()
    local _ <close> = setmetatable({}, {__close = function() closed = true end})
    error({code = 7})
  end)
  local t_ok, t_err = pcall(tbc)
  T.eq(t_ok, false); T.eq(t_err.code, 7); T.eq(closed, true, "to-be-closed variables closed on error")
  T.eq(select(2, pcall(coroutine.resume, 42)):find("thread expected") ~= nil, true)
end)

T.test("Thread API: names, join timeout, is_alive, ident, extend, enumerate", function()
  local t = concur.Thread{target = function() concur.sleep(0.3) end, name = "sleeper"}
  T.eq(t.name, "sleeper"); T.eq(t:is_alive(), false); T.eq(t.ident, nil)
  T.raises("ValueError", t.join, t)
  t:start()
  T.eq(t:join(0.05), false); T.eq(t:is_alive(), true)
  assert(math.type(t.ident) == "integer")
  T.eq(concur.active_count(), 2)
  T.eq(#concur.enumerate(), 2)
  T.raises("ValueError", t.start, t)
  T.eq(t:join(), true); T.eq(t:is_alive(), false)
  local Sub = concur.Thread:extend()
  local seen
  function Sub:run() seen = {self.k, concur.current_thread() == self} end
  local s = Sub{k = 42}
  assert(s.name:match("^Thread%-%d+$"), s.name)
  s:start(); s:join()
  T.eq(seen[1], 42); T.eq(seen[2], true)
  T.eq(concur.current_thread(), concur.main_thread())
  T.eq(concur.main_thread().name, "MainThread")
  local err = T.raises("ValueError", concur.main_thread().join, concur.main_thread())
  assert(err.message:find("cannot join itself"), err.message)
  local selfjoin
  local t2 = concur.Thread{target = function()
    selfjoin = {pcall(concur.current_thread().join, concur.current_thread())}
  end}
  t2:start(); t2:join()
  T.eq(selfjoin[1], false)
  assert(tostring(selfjoin[2]):find("cannot join itself"), tostring(selfjoin[2]))
  T.eq(pcall(concur.Thread, {target = 5}), false)
end)

T.test("the main thread cannot be joined from another thread, and says why", function()
  local box = concur.Queue()
  local t = concur.Thread{target = function()
    local ok, err = pcall(concur.main_thread().join, concur.main_thread(), 0.1)
    box:put({ok, tostring(err)})
  end}
  t:start()
  T.eq(t:join(10), true)
  local r = box:get(true, 10)
  T.eq(r[1], false)
  assert(r[2]:find("the main thread cannot be joined", 1, true), r[2])
end)

T.test("a new thread is its own current_thread() from its first instruction", function()
  -- A switch of the GIL at every instruction of start() (the main thread
  -- sleeps in a hook) lets the new thread run before start() returns: it
  -- was the main thread there, and a Pool used by it took two leaders for
  -- one, leaving a thread waiting for good (test_pool's two threads).
  local main_co = coroutine.running()
  for i = 1, 10 do
    local t, seen
    t = concur.Thread{target = function() seen = concur.current_thread() end}
    debug.sethook(function()
      if coroutine.running() == main_co then concur.sleep(0.0005) end
    end, "", 1)
    t:start()
    debug.sethook()
    T.eq(t:join(10), true)
    assert(seen == t, ("thread %d saw itself as %s"):format(i, tostring(seen)))
  end
end)

T.test("every primitive between threads", function()
  local sem, ev, q = concur.Semaphore(0), concur.Event(), concur.Queue()
  local cond, bar, rl = concur.Condition(), concur.Barrier(3), concur.RLock()
  local ready = false
  local ts = {}
  for i = 1, 2 do
    ts[i] = concur.Thread{target = function()
      sem:release()
      ev:wait()
      q:put(i)
      do
        local _ <close> = cond:hold()
        cond:wait_for(function() return ready end)
      end
      bar:wait(10)
      rl:acquire(); rl:acquire(); rl:release(); rl:release()
    end}
    ts[i]:start()
  end
  T.eq(sem:acquire(true, 5), true); T.eq(sem:acquire(true, 5), true)
  ev:set()
  local got = q:get(true, 5) + q:get(true, 5)
  T.eq(got, 3)
  do
    local _ <close> = cond:hold()
    ready = true
    cond:notify_all()
  end
  bar:wait(10)
  for _, t in ipairs(ts) do T.eq(t:join(10), true) end
end)

T.test("an RLock is owned by a thread, not by the process", function()
  local r = concur.RLock()
  r:acquire()
  local result
  local t = concur.Thread{target = function()
    result = {r:acquire(false), pcall(r.release, r)}
  end}
  t:start(); t:join()
  T.eq(result[1], false, "another thread cannot take it")
  T.eq(result[2], false, "nor release it")
  r:release()
end)

T.test("forking from a process with threads: one thread, a working GIL", function()
  local bg = concur.Thread{target = function() concur.sleep(0.5) end, daemon = true}
  bg:start()
  local q = concur.Queue()
  local p = concur.Process{target = function()
    local inner = concur.Thread{target = function() q:put("thread in child") end}
    inner:start(); inner:join()
    q:put(concur.active_count())
  end}
  p:start(); p:join()
  T.eq(p.exitcode, 0)
  T.eq(q:get(true, 5), "thread in child")
  T.eq(q:get(true, 5), 1)
end)

T.test("an object closed by one thread while another waits on it outlives the wait", function()
  local kinds = {
    Queue = function(o) return o:get(true, 0.3) end,
    Lock = function(o) return o:acquire(true, 0.3) end,
    Event = function(o) return o:wait(0.3) end,
    Semaphore = function(o) return o:acquire(true, 0.3) end,
  }
  local function round()
    for kind, wait in pairs(kinds) do
      local o = concur[kind](kind == "Semaphore" and 0 or nil)
      if kind == "Lock" then o:acquire() end
      local result
      local inside = concur.Event()
      local t = concur.Thread{target = function()
        inside:set() -- the GIL goes to the main thread once this one waits
        result = {pcall(wait, o)}
      end}
      t:start()
      T.eq(inside:wait(10), true)
      concur.sleep(0.05)
      getmetatable(o).__close(o) -- this process's only handle, while the thread waits on it
      -- New objects made meanwhile must not land where it was.
      local others = {}
      for i = 1, 50 do
        others[i] = concur.Queue()
        others[i]:put("not yours")
      end
      T.eq(t:join(10), true)
      if kind == "Queue" then
        T.eq(result[1], false, "nobody put into the closed Queue")
        T.eq(concur.is(result[2], "Empty"), true, tostring(result[2]))
      else
        T.eq(result[1], true)
        T.eq(result[2], false, kind .. ": the wait timed out, as nobody released it")
      end
      for _, q in ipairs(others) do q:close() end
      collectgarbage(); collectgarbage()
    end
  end
  -- (A first round grows this process's table of held objects, which stays.)
  round()
  local used = concur.arena_stats().used
  round()
  T.eq(concur.arena_stats().used, used, "each object is freed once the wait is over")
end)

T.test("daemon threads that still compute at the end never run while the state closes", function()
  local path = T.script([[
    local concur = require "concur"
    for i = 1, 4 do
      concur.Thread{daemon = true, target = function()
        local x = 0
        while true do
          x = x + 1
          local t = {x, tostring(x)}
          if x % 1000 == 0 then concur.sleep(0.0001) end
        end
      end}:start()
    end
    concur.Thread{target = function() concur.sleep(0.02) end}:start()
    concur.sleep(0.01)
    print("end")]])
  local bin = os.getenv("CONCUR") or "./build/concur"
  for _ = 1, 20 do
    local code, out, err = T.sh(bin .. " run " .. path)
    T.eq(code, 0, "exit code (stderr: " .. err .. ")")
    T.eq(out, "end\n")
  end
  os.remove(path)
end)

T.done()
