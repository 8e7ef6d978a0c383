-- test_sync: every method and error kind of the synchronisation primitives.
local concur = require "concur"
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

T.test("Lock acquire, release, locked, timeouts", function()
  local l = concur.Lock()
  T.eq(l:acquire(), true)
  T.eq(l:locked(), true)
  T.eq(l:acquire(false), false, "non-blocking acquire of a held lock")
  local t0 = concur.time()
  T.eq(l:acquire(true, 0.1), false, "timed acquire")
  local dt = concur.time() - t0
  assert(dt >= 0.1 and dt < 0.15, "timeout honoured: " .. dt)
  l:release()
  T.eq(l:locked(), false)
  local e = T.raises("ValueError", l.release, l)
  T.eq(tostring(e), "concur.ValueError: release of an unlocked Lock")
  assert(e.traceback:find("stack traceback"), "the error carries a traceback")
end)

T.test("hold guards and with", function()
  local l = concur.Lock()
  do
    local _ <close> = l:hold()
    T.eq(l:locked(), true)
  end
  T.eq(l:locked(), false, "released at the end of the block")
  T.eq(select(2, l:with(function(a, b) return a + b, a * b end, 3, 4)), 12)
  T.eq(l:locked(), false)
  local ok, err = pcall(l.with, l, function() error("inside") end)
  T.eq(ok, false)
  assert(tostring(err):find("inside"))
  T.eq(l:locked(), false, "released after an error")
  pcall(function()
    local _ <close> = l:hold()
    error("boom")
  end)
  T.eq(l:locked(), false, "guard released on error")
end)

T.test("RLock recursion and ownership", function()
  local r = concur.RLock()
  for _ = 1, 3 do T.eq(r:acquire(), true) end
  r:release(); r:release()
  T.eq(r:locked(), true)
  local p = concur.Process{target = function()
    local ok, err = pcall(r.release, r)
    os.exit((not ok and concur.is(err, "ValueError")) and 0 or 1)
  end}
  p:start(); p:join()
  T.eq(p.exitcode, 0, "a non-owner cannot release an RLock")
  r:release()
  T.eq(r:locked(), false)
end)

T.test("owner death hands the lock over with a warning", function()
  local l = concur.Lock()
  local p = concur.Process{target = function()
    l:acquire()
    concur.sleep(60)
  end}
  p:start()
  while not l:locked() do end
  p:kill()
  local ok, why = l:acquire(true, 5)
  T.eq(ok, true)
  T.eq(why, "owner_died")
  l:release()
  p:join()
  T.eq(p.exitcode, -9)
end)

T.test("block and timeout as Python's keywords, one rule for every blocking method", function()
  local q, l, e, s = concur.Queue(), concur.Lock(), concur.Event(), concur.Semaphore(0)
  local function quick(f, ...)
    local t0 = concur.time()
    local r = table.pack(pcall(f, ...))
    assert(concur.time() - t0 < 2, "it waited for its timeout only")
    return table.unpack(r, 1, r.n)
  end
  local ok, err = quick(q.get, q, {timeout = 0.05})
  T.eq(ok, false); T.eq(err.kind, "Empty")
  ok, err = quick(q.get, q, {block = false})
  T.eq(err.kind, "Empty")
  T.eq(quick(l.acquire, l), true)
  T.eq(select(2, quick(l.acquire, l, {timeout = 0.05})), false)
  T.eq(select(2, quick(l.acquire, l, {block = false})), false)
  l:release()
  T.eq(select(2, quick(e.wait, e, {timeout = 0.05})), false)
  T.eq(select(2, quick(s.acquire, s, {timeout = 0.05})), false)
  local p = concur.Process{target = function() concur.sleep(5) end}
  p:start()
  T.eq(select(2, quick(p.join, p, {timeout = 0.05})), false)
  p:kill(); p:join()
  -- Misuse is refused, never taken for something else.
  local function refused(want, f, ...)
    local ok2, e2 = pcall(f, ...)
    T.eq(ok2, false)
    assert(tostring(e2):find(want, 1, true), tostring(e2))
  end
  refused("unknown option 'timout' (did you mean 'timeout'?)", function() return q:get{timout = 1} end)
  refused("block must be a boolean, not number (a timeout goes after it, or as {timeout = seconds})",
          function() return q:get(5) end)
  refused("timeout must be a number of seconds, not string", function() return e:wait("soon") end)
  refused("unknown option 'blok'", function() return l:acquire{blok = false} end)
end)

T.test("the OwnerDied warning names the dead holder, for every kind of lock", function()
  -- The holder is reaped (joined) before the lock is taken over: its name
  -- still shows. A Value's and a Condition's locks warn as a Lock does.
  local path = T.script([[
local concur = require "concur"
local objs = {Lock = concur.Lock(), Value = concur.Value("i", 0), Condition = concur.Condition()}
for _, kind in ipairs{"Lock", "Value", "Condition"} do
  local o = objs[kind]
  local p = concur.Process{name = "holder-" .. kind, target = function() o:acquire() os.exit(0) end}
  p:start(); p:join()
  local ok, why = o:acquire(true, 5)
  print(kind, ok, why)
  o:release()
end
]])
  local code, out, err = T.sh(bin .. " run " .. path)
  T.eq(code, 0, err)
  T.eq(out, "Lock\ttrue\towner_died\nValue\ttrue\towner_died\nCondition\ttrue\towner_died\n")
  for _, kind in ipairs{"Lock", "Value", "Condition"} do
    assert(err:find("OwnerDied: " .. kind .. "%-%d+[^:]*: its holder holder%-" .. kind .. " %(pid %d+%) died"),
           err)
  end
  os.remove(path)
end)

T.matrix("Semaphore: release(n) wakes n waiters at once; too many changes nothing", function(spawn)
  local s, b = concur.Semaphore(0), concur.BoundedSemaphore(5)
  local got = concur.Queue()
  local ps = {}
  for i = 1, 3 do ps[i] = spawn(function() s:acquire(); got:put(i) end) end
  concur.sleep(0.05)
  s:release(3)
  local seen = {}
  for _ = 1, 3 do seen[got:get(true, 10)] = true end
  T.eq(seen[1] and seen[2] and seen[3], true)
  for _, p in ipairs(ps) do p:join() end
  T.eq(s:get_value(), 0)
  b:acquire(); b:acquire()
  T.raises("ValueError", b.release, b, 3)
  T.eq(b:get_value(), 3, "a refused release(3) gave nothing back")
  b:release(2)
  T.eq(b:get_value(), 5)
  local t0 = concur.time()
  T.raises("ValueError", s.release, s, 1 << 31)
  assert(concur.time() - t0 < 1, "refused at once")
  T.eq(s:get_value(), 0)
end)

T.test("OwnerDied says a thread ended holding it, or a process died (joined or not)", function()
  local path = T.script([[
local concur = require "concur"
local l, m = concur.Lock{name = "fork"}, concur.Lock{name = "knife"}
local t = concur.Thread{target = function() l:acquire() end}
t:start(); t:join()
print(l:acquire(true, 5))
local p = concur.Process{name = "Holder", target = function() m:acquire(); os.exit(0) end}
p:start()
while p:is_alive() do concur.sleep(0.01) end -- ended, not joined: a zombie
print(m:acquire(true, 5))
p:join()
]])
  local code, out, err = T.sh(bin .. " run " .. path)
  T.eq(code, 0, err)
  T.eq(out, "true\towner_died\ntrue\towner_died\n")
  assert(err:find("OwnerDied: Lock 'fork': its holder, a thread of MainProcess %(pid %d+%) ended holding it"), err)
  assert(err:find("OwnerDied: Lock 'knife': its holder Holder %(pid %d+%) died holding it"), err)
  os.remove(path)
end)

T.test("Semaphore and BoundedSemaphore", function()
  local s = concur.Semaphore(2)
  T.eq(s:get_value(), 2)
  T.eq(s:acquire(), true); T.eq(s:acquire(), true)
  T.eq(s:acquire(false), false)
  T.eq(s:acquire(true, 0.05), false)
  s:release(2)
  T.eq(s:get_value(), 2)
  s:release()
  T.eq(s:get_value(), 3, "an unbounded semaphore may go above its start")
  local b = concur.BoundedSemaphore(1)
  T.raises("ValueError", b.release, b)
  do local _ <close> = b:hold(); T.eq(b:get_value(), 0) end
  T.eq(b:get_value(), 1)
  local ok = pcall(concur.Semaphore, -1)
  T.eq(ok, false, "a negative value is refused")
end)

T.test("Event set, clear, wait across processes", function()
  local e = concur.Event()
  T.eq(e:is_set(), false)
  T.eq(e:wait(0.05), false)
  local ps = {}
  for i = 1, 4 do
    ps[i] = concur.Process{target = function() os.exit(e:wait(10) and 0 or 1) end}
    ps[i]:start()
  end
  e:set()
  for _, p in ipairs(ps) do p:join(); T.eq(p.exitcode, 0) end
  T.eq(e:wait(), true)
  e:clear()
  T.eq(e:is_set(), false)
end)

T.test("Condition wait, wait_for, notify", function()
  local c = concur.Condition()
  T.raises("ValueError", c.wait, c, 0)
  T.raises("ValueError", c.notify, c)
  local ready = concur.Event()
  local p = concur.Process{target = function()
    local _ <close> = c:hold()
    ready:set()
    os.exit(c:wait(10) and 0 or 1)
  end}
  p:start()
  ready:wait()
  do local _ <close> = c:hold(); c:notify_all() end
  p:join()
  T.eq(p.exitcode, 0)
  c:acquire()
  T.eq(c:wait_for(function() return "now" end, 5), "now", "a true predicate returns at once")
  local calls = 0
  T.eq(c:wait_for(function() calls = calls + 1; return false end, 0.05), false)
  assert(calls >= 2, "the predicate is checked again after the timeout")
  T.eq(c:wait(0.05), false)
  c:release()
  local lock = concur.Lock()
  local c2 = concur.Condition(lock)
  c2:acquire()
  T.eq(lock:locked(), true, "a condition uses the lock it is given")
  c2:release()
  T.eq(pcall(concur.Condition, 5), false)
end)

T.test("Barrier with action, timeout, abort, reset", function()
  local hits = concur.Semaphore(0)
  local b = concur.Barrier(3, function() hits:release() end)
  T.eq(b:parties(), 3)
  local ps = {}
  for i = 1, 2 do
    ps[i] = concur.Process{target = function() b:wait(10) end}
    ps[i]:start()
  end
  local idx = b:wait(10)
  for _, p in ipairs(ps) do p:join(); T.eq(p.exitcode, 0) end
  assert(idx >= 0 and idx <= 2)
  T.eq(hits:get_value(), 1, "the action ran once")
  T.raises("BrokenBarrier", b.wait, b, 0.05)
  T.eq(b:broken(), true)
  b:reset()
  T.eq(b:broken(), false)
  T.eq(b:n_waiting(), 0)
  b:abort()
  T.raises("BrokenBarrier", b.wait, b)
  local bad = concur.Barrier(1, function() error("action failed") end)
  local ok, err = pcall(bad.wait, bad)
  T.eq(ok, false)
  assert(tostring(err):find("action failed"))
end)

-- Between parties: each case once with the other parties as processes, as
-- threads of this one, and as threads of another process.

for _, kind in ipairs({"Lock", "RLock"}) do
  T.matrix(kind .. ": 4 parties add 2000 each under it, exactly", function(spawn)
    local lock, n = concur[kind](), concur.RawValue('q', 0)
    local function add(times)
      for _ = 1, times do
        lock:acquire()
        if kind == "RLock" then lock:acquire() end
        n.value = n.value + 1 -- a read and then a write: only the lock makes it exact
        if kind == "RLock" then lock:release() end
        lock:release()
      end
    end
    T.alongside(spawn, 4, add, 2000)
    T.eq(n.value, 10000)
    T.eq(lock:locked(), false)
  end)
end

T.matrix("every primitive has a name, given or kind and serial, the same in every party", function(spawn)
  local objs = {
    concur.Lock{name = "fork"}, concur.RLock{name = "r"}, concur.Semaphore(4, {name = "rooms"}),
    concur.BoundedSemaphore(2, {name = "bs"}), concur.Event{name = "go"},
    concur.Condition(nil, {name = "cv"}), concur.Barrier(2, {name = "gate"}),
    concur.Queue(5, {name = "orders"}), concur.JoinableQueue{name = "jobs"},
    concur.SimpleQueue{name = "sq"}, concur.Lock(), concur.Queue(),
  }
  local want = {"Lock(fork, ", "RLock(r, ", "Semaphore(rooms, ", "BoundedSemaphore(bs, ",
                "Event(go, ", "Condition(cv", "Barrier(gate, ", "Queue(orders, ", "JoinableQueue(jobs, ",
                "SimpleQueue(sq, ", "Lock(Lock%-%d+, ", "Queue(Queue%-%d+, "}
  for i, o in ipairs(objs) do
    assert(tostring(o):find("^" .. want[i]:gsub("%(", "%%("):gsub("%%%%%-", "%%-")), tostring(o))
  end
  local back = concur.Queue()
  spawn(function()
    local seen = {}
    for i, o in ipairs(objs) do seen[i] = tostring(o) end
    back:put(seen)
  end):join()
  local seen = back:get(true, 10)
  for i, o in ipairs(objs) do T.eq(seen[i]:match("^[^,)]*"), tostring(o):match("^[^,)]*")) end
end)

T.test("names: refused when not a string of 1 to 63 bytes; options only where they go", function()
  local refused = T.refuses
  refused("unknown option 'nam' %(did you mean 'name'%?%)", concur.Lock, {nam = "x"})
  refused("name must be a string, not number", concur.Event, {name = 5})
  refused("name must be 1 to 63 bytes", concur.Queue, 3, {name = ("x"):rep(64)})
  refused("name must be 1 to 63 bytes", concur.Semaphore, 1, {name = ""})
  refused("options must be a table such as {name = ...}, not number", concur.Semaphore, 2, 3)
  refused("arguments at most", concur.Queue, 3, {name = "a"}, 4)
  refused("options must be a table such as {name = ...}, not number", concur.Lock, 5)
end)

T.matrix("Lock: a timed acquire fails while another party holds it, then succeeds", function(spawn)
  local lock, held, go = concur.Lock(), concur.Event(), concur.Event()
  local other = spawn(function()
    lock:acquire()
    held:set()
    go:wait(30)
    lock:release()
  end)
  T.eq(held:wait(30), true)
  local t0 = concur.time()
  T.eq(lock:acquire(true, 0.1), false)
  assert(concur.time() - t0 >= 0.1, "the timeout was waited")
  T.eq(lock:acquire(false), false)
  go:set()
  T.eq(lock:acquire(true, 30), true, "released by the other party")
  lock:release()
  other:join()
end)

T.matrix("RLock: owned by its holder alone", function(spawn)
  local r, held, go, verdict = concur.RLock(), concur.Event(), concur.Event(), concur.Queue()
  r:acquire()
  local other = spawn(function()
    local ok, err = pcall(r.release, r)
    verdict:put(not ok and concur.is(err, "ValueError"))
    verdict:put(r:acquire(false))
    go:wait(30)
    verdict:put(r:acquire(true, 30))
    r:release()
    held:set()
  end)
  T.eq(verdict:get(true, 30), true, "another party cannot release it")
  T.eq(verdict:get(true, 30), false, "nor take it while it is held")
  r:release()
  go:set()
  T.eq(verdict:get(true, 30), true, "it takes it once released")
  T.eq(held:wait(30), true)
  other:join()
  T.eq(r:locked(), false)
end)

for _, kind in ipairs({"Semaphore", "BoundedSemaphore"}) do
  T.matrix(kind .. "(2): never more than 2 of 5 parties inside", function(spawn)
    local sem, guard = concur[kind](2), concur.Lock()
    local inside, most, entries = concur.RawValue('i', 0), concur.RawValue('i', 0), concur.RawValue('i', 0)
    local function visit(times)
      for _ = 1, times do
        sem:acquire()
        guard:with(function()
          inside.value = inside.value + 1
          entries.value = entries.value + 1
          if inside.value > most.value then most.value = inside.value end
        end)
        concur.sleep(0.0002)
        guard:with(function() inside.value = inside.value - 1 end)
        sem:release()
      end
    end
    T.alongside(spawn, 4, visit, 100)
    T.eq(entries.value, 500)
    assert(most.value >= 1 and most.value <= 2, "at most 2 inside, was " .. most.value)
    T.eq(sem:get_value(), 2)
  end)
end

T.matrix("Event: 500 rounds of ping-pong", function(spawn)
  local ping, pong = concur.Event(), concur.Event()
  local other = spawn(function()
    for _ = 1, 500 do
      assert(ping:wait(30), "ping came")
      ping:clear()
      pong:set()
    end
  end)
  for i = 1, 500 do
    ping:set()
    T.eq(pong:wait(30), true, "pong " .. i)
    pong:clear()
  end
  other:join()
end)

T.matrix("Condition: a bounded buffer, 500 items in order, wait_for and notify", function(spawn)
  local cond = concur.Condition()
  local buf, head, tail = concur.RawArray('q', 4), concur.RawValue('q', 0), concur.RawValue('q', 0)
  local producer = spawn(function()
    for i = 1, 500 do
      local _ <close> = cond:hold()
      assert(cond:wait_for(function() return tail.value - head.value < 4 end, 30), "room came")
      buf[tail.value % 4 + 1] = i
      tail.value = tail.value + 1
      cond:notify_all()
    end
  end)
  local got = {}
  for k = 1, 500 do
    local _ <close> = cond:hold()
    T.eq(cond:wait_for(function() return tail.value > head.value end, 30), true)
    got[k] = buf[head.value % 4 + 1]
    head.value = head.value + 1
    cond:notify()
  end
  producer:join()
  T.sequence(got, 500, "items")
end)

T.matrix("Barrier(3): 100 generations with two other parties, indices 0..2 each", function(spawn)
  local actions = concur.RawValue('i', 0)
  local b = concur.Barrier(3, function() actions.value = actions.value + 1 end)
  local seen = concur.Queue()
  local function run()
    for g = 1, 100 do seen:put({g, b:wait(30)}) end
  end
  local ps = {spawn(run), spawn(run)}
  run()
  for _, p in ipairs(ps) do p:join() end
  local per = {}
  for _ = 1, 300 do
    local m = seen:get(true, 30)
    per[m[1]] = (per[m[1]] or 0) + (1 << m[2])
  end
  for g = 1, 100 do T.eq(per[g], 7, "generation " .. g .. " had indices 0, 1 and 2") end
  T.eq(actions.value, 100, "the action ran once a generation")
  T.eq(b:broken(), false)
end)

T.matrix("Barrier: a party's timeout breaks it for the others", function(spawn)
  local b, broken = concur.Barrier(3), concur.Queue()
  local other = spawn(function()
    local ok, err = pcall(b.wait, b, 30)
    broken:put(not ok and concur.is(err, "BrokenBarrier"))
  end)
  T.raises("BrokenBarrier", b.wait, b, 0.2) -- the third party never comes
  T.eq(broken:get(true, 30), true, "the waiting party saw it break")
  other:join()
  T.eq(b:broken(), true)
end)

T.test("closed objects and wrong types are refused", function()
  local l = concur.Lock()
  local name = tostring(l):match("^Lock%((Lock%-%d+), unlocked%)$")
  assert(name, tostring(l))
  getmetatable(l).__close(l)
  T.eq(tostring(l), ("Lock(%s, closed)"):format(name), "a closed object still prints")
  local q = concur.Queue(3)
  q:close()
  assert(tostring(q):match("^Queue%(Queue%-%d+, closed%)$"), tostring(q))
  local named = concur.Queue(3, {name = "orders"})
  named:close()
  T.eq(tostring(named), "Queue(orders, closed)")
  local ok, err = pcall(l.acquire, l)
  T.eq(ok, false)
  assert(tostring(err):find("attempt to use a closed Lock"), tostring(err))
  ok, err = pcall(concur.Lock().acquire, concur.Event())
  T.eq(ok, false)
  assert(tostring(err):find("Lock expected"), tostring(err))
  T.eq(concur.is("not an error", "ValueError"), false)
end)

T.test("a deadlock ends the run with exit 3 and the cycle; waits that can end are not one", function()
  -- Threads of one process, and two processes: exit 3, each thread of the
  -- cycle named with what it holds and what it waits for.
  local code, out, err = T.sh(bin .. " run scripts/threads/deadlock.lua")
  T.eq(code, 3, "exit status of the lesson's deadlock")
  assert(out:find("has A"), out)
  assert(err:find("concur: deadlock: 2 threads wait for each other's locks, forever:", 1, true), err)
  assert(err:find("Thread%-%d of MainProcess %(pid %d+%) holds Lock '[AB]' and waits to acquire Lock '[AB]' at scripts/threads/deadlock.lua:%d+"), err)
  code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local A, B = concur.RLock{name = "A"}, concur.Lock()
    local ready = concur.Barrier(2)
    concur.Process{name = "Taker", target = function()
      B:acquire(); ready:wait(); A:acquire()
    end}:start()
    A:acquire(); ready:wait(); B:acquire()
  ]]))
  T.eq(code, 3, "exit status of a deadlock between processes")
  assert(err:find("MainThread of Taker (pid ", 1, true) and err:find("holds Lock-1 and waits to acquire RLock 'A' at ", 1, true), err)
  -- Not deadlocks: one wait of the cycle has a timeout; a holder sleeps
  -- (a process), then releases; a Lock waited for by its holder is
  -- released by another thread, as CPython allows.
  code = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local A, B = concur.Lock(), concur.Lock()
    local ready = concur.Barrier(2)
    local t = concur.Thread{target = function()
      B:acquire(); ready:wait(); assert(A:acquire(true, 1.5) == false); B:release()
    end}
    t:start()
    A:acquire(); ready:wait(); B:acquire(); A:release(); B:release()
    t:join()
    B:acquire()
    local s = concur.Process{target = function() concur.sleep(1.5); B:release() end}
    s:start()
    B:acquire()
    s:join()
    local L = concur.Lock()
    L:acquire()
    local r = concur.Thread{target = function() concur.sleep(1.5); L:release() end}
    r:start()
    L:acquire()
    r:join()
  ]]) .. " --timeout 20")
  T.eq(code, 0, "waits that end are no deadlock")
end)

T.done()
