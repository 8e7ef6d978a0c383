-- test_wait: concur.wait on every kind of object it takes (bindings/lwait.c, core/ready.c)
local concur = require "concur"
local socket = require "socket"
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local KINDS = {"Queue", "Event", "Semaphore", "Connection", "Thread", "Process", "socket"}

-- Everything it can wait on, none ready, and for each the change that
-- makes it ready (made by the other party, through `go` when it is this
-- process's own Thread or Process that must end).
local function objects()
  local o = {go = concur.Event(), q = concur.Queue(), e = concur.Event(), s = concur.Semaphore(0)}
  o.a, o.b = concur.Pipe()
  o.srv = assert(socket.bind("127.0.0.1", 0))
  o.port = select(2, o.srv:getsockname())
  o.t = concur.Thread{target = function(go) go:wait() end, args = {o.go}}
  o.p = concur.Process{target = function(go) go:wait() end, args = {o.go}}
  o.t:start(); o.p:start()
  o.list = {o.q, o.e, o.s, o.a, o.t, o.p, o.srv}
  return o
end

local function make_ready(o, i)
  concur.sleep(0.05)
  if i == 1 then o.q:put("x")
  elseif i == 2 then o.e:set()
  elseif i == 3 then o.s:release()
  elseif i == 4 then o.b:send("x")
  elseif i == 5 or i == 6 then o.go:set()
  else assert(socket.connect("127.0.0.1", o.port)):close() end
end

T.matrix("concur.wait: the one object the other party makes ready, of each kind", function(spawn)
  for i, kind in ipairs(KINDS) do
    local o = objects()
    local p = spawn(make_ready, o, i)
    local got = concur.wait(o.list, 30)
    p:join()
    -- The Thread and the Process both end on `go`: either may come first.
    if i == 5 or i == 6 then
      assert(#got >= 1 and #got <= 2, kind .. ": " .. #got .. " ready")
      for _, x in ipairs(got) do assert(x == o.t or x == o.p, kind) end
      o.t:join(); o.p:join()
      T.eq(#concur.wait(o.list, 0), 2, kind .. ": both ended")
    else
      T.eq(#got, 1, kind .. ": ready")
      T.eq(got[1], o.list[i], kind)
      o.go:set(); o.t:join(); o.p:join()
    end
    o.srv:close()
  end
end)

T.matrix("concur.wait: a waiter in each kind of party, woken by a put here", function(spawn)
  local q, e, said = concur.Queue(), concur.Event(), concur.Queue()
  local a, b = concur.Pipe()
  local p = spawn(function()
    local got = concur.wait({e, a, q}, 30)
    said:put(#got == 1 and got[1] == q)
  end)
  concur.sleep(0.05)
  q:put(1)
  T.eq(said:get(true, 30), true)
  p:join()
end)

T.test("concur.wait: its timeout, none, zero, and nothing to wait on", function()
  local q, e = concur.Queue(), concur.Event()
  local t0 = concur.time()
  T.eq(#concur.wait({q, e}, 0.2), 0)
  local dt = concur.time() - t0
  assert(dt >= 0.2 and dt < 1, "the timeout: " .. dt)
  t0 = concur.time()
  T.eq(#concur.wait({q, e}, 0), 0)
  assert(concur.time() - t0 < 0.5, "0 looks without waiting")
  T.eq(#concur.wait({}), 0)
  e:set()
  local got = concur.wait({q, e, e})
  T.eq(#got, 2, "a value twice is there twice")
  T.eq(got[1], e)
  q:put(1)
  T.eq(#concur.wait({q, e}), 2, "in their order")
  T.eq(concur.wait({q, e})[1], q, "in their order")
end)

T.test("concur.wait: its copies of descriptors are closed, whatever the end", function()
  local function fds()
    local n = 0
    for _ in io.popen("ls /proc/" .. concur.getpid() .. "/fd"):lines() do n = n + 1 end
    return n
  end
  local a, b = concur.Pipe()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local go, q = concur.Event(), concur.Queue()
  local p = concur.Process{target = function() go:wait() end}
  p:start()
  collectgarbage(); collectgarbage()
  local before = fds()
  for _ = 1, 50 do
    T.eq(#concur.wait({a, srv, q, p}, 0), 0)
    pcall(concur.wait, {a, srv, p, concur.Lock()})
  end
  go:set()
  T.eq(concur.wait({a, srv, p}, 30)[1], p)
  collectgarbage(); collectgarbage()
  -- At most: the process's pidfd went as the look reaped it, and what the
  -- collector closed meanwhile (objects of earlier cases) only lowers it;
  -- 150 copies left open would raise it.
  local after = fds()
  assert(after <= before - 1, ("descriptors open: %d before, %d after"):format(before, after))
  p:join()
  b:close(); srv:close()
end)

T.test("concur.wait: what it cannot wait on is refused, saying what it takes", function()
  -- What it takes, said from the types there are.
  local takes = "which concur.wait cannot wait on %(it waits for a Semaphore, BoundedSemaphore, " ..
                "Event, Queue, JoinableQueue, SimpleQueue, Connection, Thread, Process, a socket " ..
                "or a value whose metatable has __waitable%)"
  T.refuses("objects%[2%] is a Lock, " .. takes, concur.wait, {concur.Event(), concur.Lock()})
  T.refuses("objects%[1%] is a RWLock, " .. takes, concur.wait, {concur.RWLock()})
  T.refuses("objects%[1%] is a number, " .. takes, concur.wait, {5})
  T.refuses("objects%[1%] is a table, " .. takes, concur.wait, {{}})
  T.refuses("bad argument #1 to 'concur.wait' %(table expected", concur.wait, 5)
  T.raises("ProcessError", concur.wait, {concur.Process{target = print}})
  T.refuses("can only wait for a started thread", concur.wait, {concur.Thread{target = print}})
  T.refuses("cannot wait for the main thread to end", concur.wait, {concur.main_thread()})
  local q = concur.Queue()
  getmetatable(q).__close(q)
  T.refuses("closed", concur.wait, {q})
  local said = concur.Queue()
  local t = concur.Thread{target = function()
    local ok, err = pcall(concur.wait, {concur.current_thread()})
    said:put(not ok and tostring(err))
  end}
  t:start(); t:join()
  assert(said:get(true, 10):find("a thread cannot wait for itself to end"))
end)

T.test("concur.wait: a class of Lua waits as what its __waitable returns", function()
  local Latch = concur.class("test.Latch", {
    init = function(self, n) self.n, self.done = concur.Value("i", n), concur.Event() end,
    count_down = function(self)
      self.n:get_lock():with(function()
        self.n.value = self.n.value - 1
        if self.n.value == 0 then self.done:set() end
      end)
    end,
    __waitable = function(self) return self.done end,
  })
  local latch, q = Latch(2), concur.Queue()
  local ps = {}
  for i = 1, 2 do
    ps[i] = concur.Process{target = function(l) concur.sleep(0.02 * i); l:count_down() end, args = {latch}}
    ps[i]:start()
  end
  local got = concur.wait({q, latch}, 30)
  T.eq(#got, 1)
  T.eq(got[1], latch, "the latch itself is returned")
  for _, p in ipairs(ps) do p:join() end
end)

T.test("concur.wait: a wait that cannot end is a deadlock, explained", function()
  local code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local q = concur.Queue(0, {name = "orders"})
    concur.wait({q})
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("MainThread of MainProcess %(pid %d+%) waits on Queue 'orders' at [^\n]+:3\n"), err)
  code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local q, e = concur.Queue(), concur.Event()
    local p = concur.Process{target = function() concur.wait({q, e}) end}
    p:start()
    p:join()
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("concur: deadlock: all 2 threads are asleep, waiting with no timeout:\n", 1, true), err)
  assert(err:find("waits on any of 2 objects %(concur.wait%) at [^\n]+:3\n"), err)
  -- A socket may be made ready from outside the run: no deadlock, the
  -- timeout ends it.
  code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur, socket = require "concur", require "socket"
    local srv = socket.bind("127.0.0.1", 0)
    print(#concur.wait({concur.Queue(), srv}, 1.5))
  ]]) .. " --timeout 30")
  T.eq(code, 0, "exit status\n" .. err)
end)

T.test("concur.wait refused halfway keeps no mark on what it looked at", function()
  -- A thread waits in q's get; a refused wait that looked at q first must
  -- give back only what it took, so that closing q here keeps it alive
  -- for the thread, whose get times out instead of reading a new Queue.
  local q, got = concur.Queue(), concur.Queue()
  local t = concur.Thread{target = function()
    local ok, v = pcall(q.get, q, true, 1)
    got:put(ok and v or "timed out")
  end}
  t:start()
  concur.sleep(0.1)
  T.refuses("objects%[2%] is a number", concur.wait, {q, 42})
  collectgarbage(); collectgarbage()
  getmetatable(q).__close(q)
  local q2 = concur.Queue()
  q2:put("another queue's")
  t:join()
  T.eq(got:get(true, 10), "timed out")
end)

T.test("concur.wait does not wait for another thread's send on a Connection", function()
  local a, b = concur.Pipe()
  local q = concur.Queue()
  a:send_nowait(("x"):rep(1 << 20)) -- most of it waits in a
  local r = concur.Process{target = function()
    concur.sleep(0.3)
    b:recv()
    q:put("ready")
    concur.sleep(3)
    b:recv()
  end}
  r:start()
  local t = concur.Thread{target = function() a:send(("y"):rep(8 << 20)) end}
  t:start() -- its send holds a's turn while the reader sleeps
  concur.sleep(0.1)
  local t0 = concur.time()
  local got = concur.wait({a, q}, 1.0)
  local dt = concur.time() - t0
  assert(dt < 2, ("the wait took %.2f s: it waited for the send"):format(dt))
  T.eq(got[1], q)
  t:join(); r:join()
end)

T.test("concur.wait finds a Connection another thread closes", function()
  local a, b = concur.Pipe()
  local q, said = concur.Queue(), concur.Queue()
  local t = concur.Thread{target = function()
    local got = concur.wait({q, a}, 10)
    said:put(#got == 1 and got[1] == a)
  end}
  t:start()
  concur.sleep(0.05)
  a:close()
  T.eq(said:get(true, 10), true)
  t:join()
  b:close()
end)

T.test("concur.wait in a thread lets the others run", function()
  local e, n = concur.Event(), concur.RawValue("i", 0)
  local t = concur.Thread{target = function() concur.wait({e}) end}
  t:start()
  for _ = 1, 1000 do n.value = n.value + 1 end
  concur.sleep(0.05)
  e:set()
  t:join()
  T.eq(n.value, 1000)
  T.eq(t:is_alive(), false)
end)

T.done()
