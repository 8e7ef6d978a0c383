-- test_pool: every method of Pool and AsyncResult, failures and workers.
local concur = require "concur"
local P = require "concur.private" -- concur's own helpers, for tests of them
local T = dofile("tests/lua/harness.lua")

T.test("apply, apply_async, map, starmap, imap, imap_unordered", function()
  local pool <close> = concur.Pool{processes = 3}
  T.eq(pool:apply(function(a, b) return a * b end, {6, 7}), 42)
  local r = pool:apply_async(function(x) return x + 1 end, {1})
  T.eq(r:get(5), 2); T.eq(r:ready(), true); T.eq(r:successful(), true)
  T.eq(table.concat(pool:map(function(x) return x * x end, {1, 2, 3, 4, 5}, 2), ","), "1,4,9,16,25")
  T.eq(#pool:map(math.sqrt, {}), 0)
  T.eq(table.concat(pool:starmap(function(a, b) return a - b end, {{5, 1}, {9, 3}}), ","), "4,6")
  local m = pool:map_async(function(x) return -x end, {1, 2})
  T.eq(m:get()[2], -2)
  local seq = {}
  for i, v in pool:imap(function(x) return x * 10 end, {1, 2, 3}) do seq[i] = v end
  T.eq(table.concat(seq, ","), "10,20,30")
  local unordered = {}
  for i, v in pool:imap_unordered(function(x) concur.sleep(x / 10) return x end, {3, 1, 2}) do
    unordered[#unordered + 1] = v
  end
  T.eq(table.concat(unordered, ","), "1,2,3", "completion order")
  -- A function defined after the pool was made travels as bytecode.
  local late = function(x) return "late " .. x end
  T.eq(pool:apply(late, {1}), "late 1")
end)

T.test("map results of every kind land in place: holes, floats, shared tables, objects", function()
  local pool <close> = concur.Pool{processes = 2}
  -- Holes: a nil result, then more after it (sent as pairs).
  local r = pool:map(function(x) if x % 3 == 0 then return nil end return x end, {1, 2, 3, 4, 5, 6, 7}, 4)
  for i = 1, 7 do
    if i % 3 == 0 then T.eq(r[i], nil, "item " .. i) else T.eq(r[i], i, "item " .. i) end
  end
  -- 2.0 stays a float, strings and shared tables keep their shape.
  r = pool:map(function(x)
    local t = {x}
    return x == 1 and 2.0 or x == 2 and ("s"):rep(3) or {t, t}
  end, {1, 2, 3}, 3)
  T.eq(math.type(r[1]), "float")
  T.eq(r[2], "sss")
  T.eq(r[3][1], r[3][2], "a table shared twice in a result is one table")
  T.eq(r[3][1][1], 3)
  -- Objects travel as the reply's own references, not packed.
  local locks = pool:map(function() return concur.Lock() end, {1, 2, 3}, 2)
  T.eq(#locks, 3)
  T.eq(locks[3]:acquire(), true)
  locks[3]:release()
  local seq = {}
  for i, v in pool:imap(function(x) if x == 2 then return nil end return x end, {1, 2, 3}, 2) do
    seq[#seq + 1] = i .. "=" .. tostring(v)
  end
  T.eq(table.concat(seq, ","), "1=1,2=nil,3=3")
  -- What _pack makes, _unpack_into places; bad bytes are an error, not a crash.
  local t = {"a"}
  P.unpack_into(P.pack({10, 20}), t, 1)
  T.eq(t[1], "a"); T.eq(t[2], 10); T.eq(t[3], 20)
  T.raises("ValueError", P.unpack_into, P.pack({1, n = 1}), {}, 0)
  T.eq(P.pack({concur.Lock()}), nil)
  T.raises("ValueError", P.unpack_into, "\1\2\3", {}, 0)
  T.raises("ValueError", P.unpack_into, P.pack({1, 2}):sub(1, -2), {}, 0)
end)

T.test("imap is lazy: the first result before the last task ends", function()
  local pool <close> = concur.Pool{processes = 2}
  local it = pool:imap(function(x) concur.sleep(x) return x end, {0.01, 1})
  local t0 = concur.time()
  local i, v = it()
  T.eq(i, 1); T.eq(v, 0.01)
  assert(concur.time() - t0 < 0.5, "the first result came before the slow task ended")
  T.eq(select(2, it()), 1)
  T.eq(it(), nil)
end)

T.test("callbacks: once per task, in the parent, in completion order, during join", function()
  local parent, order, where = concur.getpid(), {}, {}
  local pool = concur.Pool{processes = 4}
  for _, s in ipairs{0.3, 0.1, 0.2} do
    pool:apply_async(function(x) concur.sleep(x) return x end, {s},
      {callback = function(v) order[#order + 1] = v; where[#where + 1] = concur.getpid() end})
  end
  local errs = 0
  pool:apply_async(function() error("bad") end, nil,
    {error_callback = function(e) if concur.is(e, "RemoteError") then errs = errs + 1 end end})
  pool:close()
  pool:join()
  T.eq(table.concat(order, ","), "0.1,0.2,0.3")
  for _, pid in ipairs(where) do T.eq(pid, parent) end
  T.eq(errs, 1)
end)

T.test("errors: RemoteError, Timeout, WorkerLost, closed pools", function()
  local pool <close> = concur.Pool{processes = 2}
  local err = T.raises("RemoteError", pool.apply, pool, function() error("task failed") end)
  assert(err.message:find("task failed"), err.message)
  assert(err.remote_traceback:find("stack traceback"), err.remote_traceback)
  local slow = pool:apply_async(function() concur.sleep(0.5) return 1 end)
  T.raises("Timeout", slow.get, slow, 0.05)
  T.eq(slow:ready(), false)
  T.raises("ValueError", slow.successful, slow)
  T.eq(slow:get(), 1)
  local q = concur.Queue()
  local lost = pool:apply_async(function() q:put(concur.getpid()) concur.sleep(60) end)
  local victim = q:get(true, 5)
  os.execute("kill -9 " .. victim)
  err = T.raises("WorkerLost", lost.get, lost, 10)
  assert(err.message:find(tostring(victim)), err.message)
  T.eq(pool:apply(function() return "replaced" end), "replaced")
  local pids = pool:workers()
  T.eq(#pids, 2)
  for _, p in ipairs(pids) do assert(p ~= victim, "the dead worker was replaced") end
  -- Where the user put it: in the task's args, in the map's list.
  local e = T.raises("Unsendable", pool.apply, pool, function() return 1 end, {1, {conn = io.stdout}})
  T.eq(e.message, "args[2].conn: userdata FILE*")
  e = T.raises("Unsendable", pool.map, pool, tostring, {1, 2, {conn = io.stdout}, 4}, 2)
  T.eq(e.message, "list[3].conn: userdata FILE*")
  e = T.raises("Unsendable", pool.starmap, pool, print, {{1}, {2, {conn = io.stdout}}}, 1)
  T.eq(e.message, "list[2][2].conn: userdata FILE*")
  T.raises("ValueError", pool.join, pool)
  pool:close()
  T.raises("ProcessError", pool.apply, pool, print, {})
  pool:join()
  local t = concur.Pool{processes = 1}
  local pending = t:apply_async(function() concur.sleep(60) end)
  t:terminate()
  T.raises("ProcessError", pending.get, pending)
  T.raises("ProcessError", t.map, t, print, {1})
  T.eq(pcall(concur.Pool, {processes = 0}), false)
end)

T.test("big maps: the parent never blocks sending while workers answer", function()
  local pool <close> = concur.Pool{processes = 2}
  local items = {}
  for i = 1, 200000 do items[i] = i end
  local r = pool:map(function(x) return x * 2 end, items)
  T.eq(#r, 200000); T.eq(r[200000], 400000)
  local big = ("x"):rep(300000)
  local rs = {}
  for i = 1, 8 do rs[i] = pool:apply_async(function(s) return s .. "!" end, {big}) end
  for i = 1, 8 do T.eq(#rs[i]:get(30), 300001) end
end)

T.test("batches: a dying worker takes its own task only, and nothing runs twice", function()
  local pool <close> = concur.Pool{processes = 2}
  for _, how in ipairs{"exit", "kill"} do
    local runs = concur.RawArray('i', 201)
    local function tiny(i)
      runs[i] = runs[i] + 1
      return i * 2
    end
    local rs = {}
    for i = 1, 100 do rs[i] = pool:apply_async(tiny, {i}) end
    rs[101] = pool:apply_async(function(kill)
      runs[101] = runs[101] + 1
      if kill then os.execute("kill -9 " .. concur.getpid()) concur.sleep(10) end
      os.exit(3)
    end, {how == "kill"})
    for i = 102, 201 do rs[i] = pool:apply_async(tiny, {i}) end
    local ok, lost = 0, 0
    for i, r in ipairs(rs) do
      T.eq(r:wait(30), true, "every task ends")
      T.eq(runs[i], 1, "task " .. i .. " ran once")
      if r:successful() then
        ok = ok + 1
        T.eq(r:get(), i * 2)
      else
        local err = T.raises("WorkerLost", r.get, r)
        if i == 101 then assert(err.message:find("running this task"), err.message) end
        lost = lost + 1
      end
    end
    T.eq(rs[101]:successful(), false)
    if how == "exit" then
      T.eq(lost, 1, "os.exit sends the results before it") -- results of earlier tasks went back
    end
    T.eq(ok + lost, 201)
  end
  T.eq(#pool:workers(), 2)
end)

T.test("a slow task holds up at most one other", function()
  local pool <close> = concur.Pool{processes = 2}
  local order = {}
  local function note(v) order[#order + 1] = v end
  local function nap(s) concur.sleep(s) return s end
  local slow = pool:apply_async(nap, {0.6}, {callback = note})
  for _ = 1, 10 do pool:apply_async(nap, {0.01}, {callback = note}) end
  pool:close()
  pool:join()
  T.eq(#order, 11)
  local before = 0
  for _, v in ipairs(order) do
    if v == 0.6 then break end
    before = before + 1
  end
  assert(before >= 9, ("%d quick tasks ended before the slow one"):format(before))
  T.eq(slow:get(), 0.6)
end)

T.test("initializer and maxtasksperchild", function()
  local pool = concur.Pool{processes = 2, maxtasksperchild = 2,
                           initializer = function(x) INIT = x end, initargs = {"set"}}
  local pids, inits = {}, {}
  for i = 1, 8 do
    local r = pool:apply(function() return {concur.getpid(), INIT} end)
    pids[r[1]] = true
    inits[#inits + 1] = r[2]
  end
  local n = 0
  for _ in pairs(pids) do n = n + 1 end
  assert(n >= 4, "workers were replaced: " .. n .. " pids")
  for _, v in ipairs(inits) do T.eq(v, "set") end
  -- Many tasks at once: a worker gets no more than it may run.
  local per = {}
  local rs = {}
  for i = 1, 50 do rs[i] = pool:apply_async(function(x) return {concur.getpid(), x} end, {i}) end
  for i = 1, 50 do
    local r = rs[i]:get(30)
    T.eq(r[2], i)
    per[r[1]] = (per[r[1]] or 0) + 1
  end
  for pid, count in pairs(per) do assert(count <= 2, pid .. " ran " .. count .. " tasks") end
  pool:close(); pool:join()
end)

-- Pools and parties: a pool belongs to the process that made it, and is
-- used by any of its threads.

-- Uses a pool the way a program does, checking every result: map, starmap,
-- apply_async with callbacks, imap and apply.
local function use_pool(pool, me, rounds)
  for r = 1, rounds do
    local xs = {}
    for i = 1, 200 do xs[i] = me * 100000 + r * 1000 + i end
    local ys = pool:map(function(x) return x * 2 end, xs, 7)
    assert(#ys == 200, "map gave " .. #ys .. " results")
    for i = 1, 200 do assert(ys[i] == xs[i] * 2, "map result " .. i) end
    local called = 0
    local rs = {}
    for i = 1, 20 do
      rs[i] = pool:apply_async(function(a, b) return a + b end, {me, i},
                               {callback = function() called = called + 1 end})
    end
    for i = 1, 20 do assert(rs[i]:get(60) == me + i, "apply_async result " .. i) end
    assert(called == 20, "every callback ran once: " .. called)
    local k = 0
    for i, v in pool:imap(function(x) return -x end, {1, 2, 3, 4, 5}) do
      k = k + 1
      assert(i == k and v == -k, "imap in order")
    end
    assert(k == 5, "imap gave every result")
    assert(pool:apply(function(s) return s .. "!" end, {tostring(me)}) == me .. "!")
  end
end

T.matrix("a pool used by the other party while this one uses its own", function(spawn)
  local mine <close> = concur.Pool{processes = 2}
  local other = spawn(function()
    local p <close> = concur.Pool{processes = 2}
    use_pool(p, 2, 5)
  end)
  use_pool(mine, 1, 5)
  other:join(120)
end)

T.matrix("one pool, used by two threads of its process at once", function(spawn, kind)
  -- The threads are this process's, or another process's with its pool.
  local function two_threads(pool)
    local errs = {}
    local ts = {}
    for i = 1, 2 do
      ts[i] = concur.Thread{target = function()
        local ok, err = xpcall(use_pool, debug.traceback, pool, i, 5)
        if not ok then errs[#errs + 1] = err end
      end}
      ts[i]:start()
    end
    use_pool(pool, 3, 5)
    for _, t in ipairs(ts) do assert(t:join(120), "a thread using the pool ended") end
    assert(#errs == 0, errs[1])
  end
  if kind == "process" or kind == "thread of a process" then
    spawn(function()
      local pool <close> = concur.Pool{processes = 3}
      two_threads(pool)
    end):join(180)
  else
    local pool <close> = concur.Pool{processes = 3}
    two_threads(pool)
    local th = spawn(use_pool, pool, 4, 3)
    th:join(120)
  end
end)

T.test("a pool's map in one thread and a Pipe in another do not mix", function()
  local pool <close> = concur.Pool{processes = 2}
  local a, b = concur.Pipe()
  local echo = concur.Thread{target = function()
    for _ = 1, 300 do b:send(b:recv()) end
  end}
  echo:start()
  local mapper = concur.Thread{target = function()
    for _ = 1, 10 do
      local ys = pool:map(function(x) return x + 1 end, {1, 2, 3, 4, 5, 6, 7, 8})
      assert(ys[8] == 9)
    end
  end}
  mapper:start()
  for i = 1, 300 do
    a:send({i, ("p"):rep(i * 10)})
    local m = a:recv()
    T.eq(m[1], i); T.eq(#m[2], i * 10)
  end
  T.eq(mapper:join(60), true)
  T.eq(echo:join(60), true)
end)

T.test("AsyncResult get and wait take a timeout as every blocking method does", function()
  local pool <close> = concur.Pool{processes = 1}
  local r = pool:apply_async(function(x) concur.sleep(0.5) return x end, {7})
  T.raises("Timeout", function() r:get{timeout = 0.01} end)
  T.eq(r:wait{timeout = 0.01}, false)
  for _, bad in ipairs{{{timout = 1}, "unknown option 'timout'"}, {-1, "not negative"},
                       {0 / 0, "not negative"}, {"soon", "must be a number"}} do
    local ok, err = pcall(r.get, r, bad[1])
    T.eq(ok, false)
    assert(tostring(err):find(bad[2], 1, true), tostring(err))
  end
  T.eq(r:get{timeout = 10}, 7)
end)

T.test("a bad initializer: refused when it is not one, and failing, it fails the pool at once", function()
  T.raises("ValueError", concur.Pool, {processes = 1, initializer = 1})
  T.raises("ValueError", concur.Pool, {processes = 1, initializer = print, initargs = 5})
  -- Made again and again, the workers would fail again (a flood of
  -- tracebacks, and a task that never ends).
  local pool = concur.Pool{processes = 2, initializer = function() error("no database") end}
  local ok, err = pcall(pool.apply, pool, function() return 1 end)
  T.eq(ok, false)
  T.eq(concur.is(err, "RemoteError"), true)
  assert(err.message:find("initializer failed in worker %d+: .*no database"), err.message)
  assert(not err.remote_traceback:find("pool:"), err.remote_traceback)
  local ok2, err2 = pcall(pool.map, pool, print, {1})
  T.eq(ok2, false)
  assert(tostring(err2):find("make a new pool", 1, true), tostring(err2))
  pool:close(); pool:join()
end)

T.test("a task's remote traceback is the task's own frames", function()
  local pool <close> = concur.Pool{processes = 1}
  local ok, err = pcall(pool.apply, pool, function()
    local function inner() error("boom") end
    inner()
  end)
  T.eq(ok, false)
  assert(err.remote_traceback:find("in local 'inner'", 1, true), err.remote_traceback)
  -- Not the pool's frames, nor the parent's below the fork.
  assert(not err.remote_traceback:find("pool:", 1, true), err.remote_traceback)
  assert(not err.remote_traceback:find("in method 'start'", 1, true), err.remote_traceback)
end)

T.test("map and map_async take Python's keywords in one table", function()
  local pool <close> = concur.Pool{processes = 2}
  local got
  local r = pool:map_async(function(x) return x + 1 end, {1, 2, 3},
                           {chunksize = 2, callback = function(v) got = v end})
  T.eq(table.concat(r:get(10), ","), "2,3,4")
  T.eq(#got, 3)
  T.eq(table.concat(pool:map(function(x) return x * 3 end, {1, 2}, {chunksize = 1}), ","), "3,6")
  T.eq(table.concat(pool:starmap(function(a, b) return a + b end, {{1, 2}}, {chunksize = 1}), ","), "3")
  local ok, err = pcall(pool.map, pool, print, {1}, {callback = print})
  T.eq(ok, false)
  assert(tostring(err):find("unknown option 'callback'", 1, true), tostring(err))
  T.raises("ValueError", pool.map_async, pool, print, {1}, {chunksize = 1}, {})
end)

T.test("map does not wait for a busy worker", function()
  -- One of three workers is on a 3 s task; a map of 6 quick items goes to
  -- the other two (today's machine: a millisecond; it took the 3 s before).
  local pool <close> = concur.Pool(3)
  pool:map(function(x) return x end, {1, 2, 3, 4, 5, 6}) -- all three started
  -- At once, and a while after the slow task began: a worker that took it
  -- a moment ago looks like one whose task is quick, and got the map's
  -- items one at a time as they were queued (the map took the 3 s).
  for _, delay in ipairs{0, 0.02, 0.1} do
    local busy = pool:apply_async(function() concur.sleep(3) return "slow" end)
    if delay > 0 then concur.sleep(delay) end
    local t0 = concur.time()
    local r = pool:map(function(x) return x * 2 end, {1, 2, 3, 4, 5, 6})
    local took = concur.time() - t0
    T.eq(table.concat(r, ","), "2,4,6,8,10,12")
    assert(took < 1.5, ("map took %.2f s %.2f s after the slow task: it waited for its worker")
      :format(took, delay))
    T.eq(busy:get(10), "slow")
  end
end)

T.done()
