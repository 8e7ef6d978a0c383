-- test_shared: Value, Array, and the Manager's containers and classes.
local concur = require "concur"
local P = require "concur.private" -- concur's own helpers, for tests of them
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

T.test("Value: every typecode, its range, its lock", function()
  local cases = {
    b = {-128, 127}, B = {0, 255}, h = {-32768, 32767}, H = {0, 65535},
    i = {-2147483648, 2147483647}, I = {0, 4294967295},
    l = {math.mininteger, math.maxinteger}, q = {math.mininteger, math.maxinteger},
    L = {0, math.maxinteger}, Q = {0, math.maxinteger},
  }
  for code, r in pairs(cases) do
    local v = concur.Value(code, r[1])
    T.eq(v.value, r[1], code .. " min")
    v.value = r[2]
    T.eq(v.value, r[2], code .. " max")
    if r[2] < math.maxinteger then T.raises("ValueError", function() v.value = r[2] + 1 end) end
    if r[1] > math.mininteger then T.raises("ValueError", function() v.value = r[1] - 1 end) end
    T.raises("ValueError", function() v.value = 0.5 end)
    T.raises("ValueError", function() v.value = "1" end)
  end
  local f, d = concur.Value('f', 0.5), concur.Value('d', 1e300)
  T.eq(f.value, 0.5); T.eq(d.value, 1e300)
  local c = concur.Value('c', "x"); T.eq(c.value, "x")
  T.raises("ValueError", function() c.value = "xy" end)
  T.eq(pcall(concur.Value, 'z'), false)
  local v = concur.Value('i', 1)
  local lock = v:get_lock()
  T.eq(lock:acquire(), true); lock:acquire(); lock:release(); lock:release() -- an RLock
  do local _ <close> = v:hold(); v.value = v.value + 1 end
  T.eq(v.value, 2)
  -- Without a lock there are no lock methods, as CPython's raw objects.
  for _, raw in ipairs{concur.RawValue('i', 0), concur.Value('i', 0, {lock = false}),
                       concur.RawArray('i', 3)} do
    for _, m in ipairs{"get_lock", "acquire", "release", "hold", "with"} do
      T.eq(raw[m], nil, tostring(raw) .. "." .. m)
    end
    T.eq(type(raw.totable), "function")
  end
  local mine = concur.Lock()
  local w = concur.Value('i', 0, {lock = mine})
  w:acquire(); T.eq(mine:locked(), true); w:release()
  assert(tostring(concur.Value('i', 5)):match("^Value%(Value%-%d+, 'i', 5%)$"))
  T.eq(tostring(concur.Value('i', 5, {name = "counter"})), "Value(counter, 'i', 5)")
  T.eq(tostring(concur.RawArray('i', {1, 2}, {name = "xs"})), "Array(xs, 'i', {1, 2})")
  T.refuses("unknown option 'lock'", concur.RawValue, 'i', 0, {lock = true})
end)

T.test("Array: sizes, tables, strings, indexes, ipairs", function()
  local a = concur.Array('i', 4)
  T.eq(#a, 4); T.eq(a[1], 0); T.eq(a[5], nil); T.eq(a[0], nil)
  a[4] = 7; T.eq(a[4], 7)
  T.raises("ValueError", function() a[5] = 1 end)
  T.raises("ValueError", function() a[0] = 1 end)
  local b = concur.Array('d', {1.5, 2.5})
  local sum = 0
  for _, x in ipairs(b) do sum = sum + x end
  T.eq(sum, 4.0)
  T.eq(table.concat(concur.RawArray('h', {1, -2, 3}):totable(), ","), "1,-2,3")
  local s = concur.Array('c', "hello")
  T.eq(s.value, "hello"); T.eq(s[1], "h"); T.eq(#s, 5)
  s.value = "hi"; T.eq(s.value, "hi")
  T.raises("ValueError", function() s.value = "too long!" end)
  T.raises("ValueError", function() return a.value end)
  T.eq(pcall(concur.Array, 'i', "str"), false)
  T.raises("ValueError", concur.Array, 'b', {1, 1000})
  local p = concur.Process{target = function() for i = 1, #a do a[i] = i * 10 end end}
  p:start(); p:join()
  T.eq(table.concat(a:totable(), ","), "10,20,30,40")
end)

T.test("Manager dict: every operation, atomic incr and apply", function()
  local m <close> = concur.Manager()
  local d = m:dict{a = 1, b = "two"}
  T.eq(d.a, 1); T.eq(d["b"], "two"); T.eq(#d, 2); T.eq(d:len(), 2)
  d.c = {nested = {1, 2}}
  T.eq(d.c.nested[2], 2)
  d.a = nil
  T.eq(d.a, nil); T.eq(#d, 2)
  T.eq(d:get("zz", "default"), "default")
  T.eq(d:pop("b"), "two"); T.eq(d:pop("b", 0), 0)
  T.raises("ValueError", d.pop, d, "b")
  d:update{x = 1, y = 2}
  local keys = d:keys()
  table.sort(keys)
  T.eq(table.concat(keys, ","), "c,x,y")
  T.eq(#d:values(), 3); T.eq(#d:items(), 3)
  local n = 0
  for k, v in pairs(d) do n = n + 1 end
  T.eq(n, 3)
  d[1] = "int key"; T.eq(d[1.0], "int key", "1.0 and 1 are one key, as in a table")
  T.raises("ValueError", function() d[{}] = 1 end)
  T.eq(d:incr("counter"), 1); T.eq(d:incr("counter", 5), 6)
  T.raises("ValueError", d.incr, d, "c")
  T.eq(d:apply("counter", function(v) return v * 10 end), 60)
  local ok, err = pcall(d.apply, d, "counter", function() error("inside apply") end)
  T.eq(ok, false); assert(tostring(err):find("inside apply"))
  T.eq(d.counter, 60, "a failed apply changes nothing")
  d.counter = 0
  local ps = {}
  for i = 1, 8 do
    ps[i] = concur.Process{target = function() for _ = 1, 500 do d:incr("counter") end end}
    ps[i]:start()
  end
  for _, p in ipairs(ps) do p:join() end
  T.eq(d.counter, 4000, "incr is atomic across processes")
  for i = 1, 2000 do d[i] = i * 2 end
  T.eq(d[1999], 3998); T.eq(#d, 2000 + 4)
  T.eq(d:totable()[10], 20)
end)

T.test("a Manager's method called with a dot says to use a colon", function()
  local m <close> = concur.Manager()
  local err = T.raises("ValueError", m.dict, {a = 1})
  T.eq(err.message, "call m:dict(...) with a colon, on a Manager")
  T.raises("ValueError", m.Queue)
  T.eq(m:dict{a = 1}.a, 1)
end)

T.test("a dict outlives a child killed in the middle of a set (CONCUR_FAULT)", function()
  -- Every process of the run is armed: the child is the only one that
  -- replaces a value, so it is the one killed, holding the dict's lock.
  local path = T.script([[
local concur = require "concur"
local m <close> = concur.Manager()
local d = m:dict()
d.a = 1
local p = concur.Process{target = function() d.b = 0; d.a = 2 end}
p:start(); p:join(10)
print(p.exitcode, d.a, d.b, #d:keys())
d.a = nil; d.c = 3
print(#d:keys(), d.c)
]])
  local code, out, err = T.sh("CONCUR_FAULT=dict.set.swapped " .. bin .. " run " .. path)
  T.eq(code, 0, err)
  T.eq(out, "-9\t2\t0\t2\n2\t3\n")
  code, _, err = T.sh("CONCUR_FAULT=dict.nothing " .. bin .. " run " .. path)
  T.eq(code, 2)
  assert(err:find("CONCUR_FAULT=dict.nothing names no fault point") and
         err:find("dict.set.swapped"), err)
  os.remove(path)
end)

T.test("children killed while they set 100 KB values leak nothing in the arena", function()
  -- 40 kills at random points of d.k = big and of l:append(big) + l:pop().
  -- The fault tests (core/test_dict.c) kill at every point exactly; here a
  -- kill between a block's making and its record can still leak it (three
  -- 'make test' at once saw two values go so), so the bound is five
  -- values, where the old code leaked one in most kills (2 MB here).
  local m <close> = concur.Manager()
  local d, l = m:dict(), m:list()
  local big = string.rep("x", 100000)
  d.k = "small"; l:append("small")
  local s0 = concur.arena_stats()
  for i = 1, 40 do
    local list = i % 2 == 0
    local p = concur.Process{target = function()
      while true do
        if list then l:append(big); l:pop() else d.k = big end
      end
    end}
    p:start()
    concur.sleep(0.002 + (i % 5) * 0.001)
    p:kill(); p:join()
  end
  d.k = "small"
  while #l > 1 do l:pop() end
  T.eq(#l, 1); T.eq(d.k, "small")
  local s1 = concur.arena_stats()
  assert(s1.used - s0.used < 5 * 131072, ("%d bytes leaked"):format(s1.used - s0.used))
  assert(s1.blocks - s0.blocks <= 5, ("%d blocks leaked"):format(s1.blocks - s0.blocks))
  T.eq(s1.size, s0.size)
end)

T.test("Manager list and Namespace", function()
  local m <close> = concur.Manager()
  local l = m:list{1, 2, 3}
  l:append(4); l:extend{5, 6}; l:insert(1, 0)
  T.eq(table.concat(l:totable(), ","), "0,1,2,3,4,5,6")
  T.eq(l:pop(), 6); T.eq(l:pop(1), 0); T.eq(l[-1], nil); T.eq(l[1], 1)
  l[2] = "two"; T.eq(l[2], "two")
  T.raises("ValueError", function() l[99] = 1 end)
  local count = 0
  for i, v in ipairs(l) do count = count + 1 end
  T.eq(count, #l)
  local e = m:list()
  T.raises("ValueError", e.pop, e)
  local ns = m:Namespace{x = 1}
  ns.y = "y"; ns.x = nil
  T.eq(ns.x, nil); T.eq(ns.y, "y"); T.eq(#ns, 1)
  local p = concur.Process{target = function() ns.z = "from a child"; l:append("child") end}
  p:start(); p:join()
  T.eq(ns.z, "from a child"); T.eq(l[#l], "child")
  local lock, q, v = m:Lock(), m:Queue(), m:Value('i', 3)
  T.eq(lock:acquire(), true); q:put(1); T.eq(q:get(), 1); T.eq(v.value, 3)
  m:shutdown()
  T.raises("ProcessError", m.dict, m)
end)

local Account = {}
Account.__index = Account
function Account.new(balance) return setmetatable({balance = balance}, Account) end
function Account:deposit(n) self.balance = self.balance + n; return self.balance end
function Account:both() return self.balance, "two values" end
function Account:boom() error("insufficient funds") end

T.test("custom manager: proxies across processes, RemoteError, shutdown", function()
  local M = concur.Manager:extend()
  M.register("Account", Account.new)
  local m = M()
  local acct = m:Account(100)
  T.eq(acct:deposit(5), 105)
  local b, s = acct:both()
  T.eq(b, 105); T.eq(s, "two values")
  -- The proxy travels through a queue to a process that did not inherit it.
  local q = concur.Queue()
  local p = concur.Process{target = function() q:get():deposit(10) end}
  p:start()
  q:put(acct)
  p:join()
  T.eq(p.exitcode, 0)
  T.eq(acct:deposit(0), 115)
  local err = T.raises("RemoteError", acct.boom, acct)
  assert(err.message:find("insufficient funds"), err.message)
  assert(err.remote_traceback:find("stack traceback"), err.remote_traceback)
  err = T.raises("RemoteError", acct.nosuch, acct)
  assert(err.message:find("no method 'nosuch'"), err.message)
  local pid = m._server.pid
  m:shutdown()
  T.eq(P.pid_alive(pid), false, "the server is gone after shutdown")
  T.raises("ProcessError", acct.deposit, acct, 1)
  T.raises("ProcessError", m.Account, m, 1)
end)

-- Between parties: each case once with the other parties as processes, as
-- threads of this one, and as threads of another process.

T.matrix("a proxy sent through a Pipe and a Queue works in the party that gets it", function(spawn)
  local M = concur.Manager:extend()
  M.register("Account", Account.new)
  local m <close> = M()
  local acct = m:Account(1)
  local a, b = concur.Pipe()
  local q = concur.Queue()
  local p = spawn(function()
    local x, y = b:recv(), q:get(true, 10)
    x:deposit(10)
    y:deposit(100)
    b:send(x:deposit(0))
  end)
  a:send(acct)
  q:put(acct)
  T.eq(a:recv(), 111, "both proxies reached the one account")
  p:join()
  T.eq(acct:deposit(0), 111)
  -- A Manager makes every primitive of the one list, RWLock too.
  local rw = m:RWLock()
  T.eq(rw:acquire_read(), true)
  rw:release()
end)

T.matrix("Value and Array: 4 parties add under the lock, exactly", function(spawn)
  local v, a = concur.Value('q', 0), concur.Array('i', 5)
  local function add(slot, times)
    for _ = 1, times do
      local _ <close> = v:get_lock():hold()
      v.value = v.value + 1
      a[5] = a[5] + 1         -- shared, under v's lock too
      a[slot] = a[slot] + 1   -- this party's own
    end
  end
  local ps = {}
  for i = 1, 4 do ps[i] = spawn(add, i, 1500) end
  for _, p in ipairs(ps) do p:join() end
  T.eq(v.value, 6000)
  T.eq(table.concat(a:totable(), ","), "1500,1500,1500,1500,6000")
end)

T.matrix("Manager dict, list, Namespace: 4 parties and a process write at once", function(spawn)
  local m <close> = concur.Manager()
  local d, l, ns = m:dict{count = 0}, m:list(), m:Namespace()
  local N = 300
  local function write(me)
    for k = 1, N do
      d:incr("count")
      d["own" .. me] = k
      local mine = d["own" .. me]
      assert(mine == k, ("party %s read its own key as %s, not %d"):format(me, tostring(mine), k))
      l:append({me, k})
      ns["p" .. me] = k
      assert(ns["p" .. me] == k, "a Namespace attribute read back")
    end
  end
  local ps = {}
  for i = 1, 4 do ps[i] = spawn(write, i) end
  -- Beside them, always, a process of its own.
  local p = concur.Process{target = write, args = {5}}
  p:start()
  -- And here, apply with a slow function, which holds the dict's lock
  -- while the others wait for it.
  for _ = 1, 20 do
    d:apply("count", function(v)
      concur.sleep(0.001)
      return v + 1
    end)
  end
  for _, h in ipairs(ps) do h:join() end
  p:join(60)
  T.eq(p.exitcode, 0)
  T.eq(d.count, 5 * N + 20, "every incr and apply counted once")
  for i = 1, 5 do
    T.eq(d["own" .. i], N)
    T.eq(ns["p" .. i], N)
  end
  T.eq(#l, 5 * N)
  local last = {}
  for _, e in ipairs(l:totable()) do
    local who, k = e[1], e[2]
    T.eq(k, (last[who] or 0) + 1, "party " .. who .. "'s appends in order")
    last[who] = k
  end
end)

T.matrix("Manager proxies: a registered class used by parties at once", function(spawn)
  local Counter = {}
  Counter.__index = Counter
  function Counter:inc(by, token)
    self.n = self.n + by
    return token
  end
  function Counter:get() return self.n end
  local M = concur.Manager:extend()
  M.register("Counter", function(n) return setmetatable({n = n}, Counter) end)
  local m <close> = M()
  local c = m:Counter(0)
  local function bump(by)
    for k = 1, 100 do
      local token = by * 1000 + k
      local back = c:inc(by, token)
      assert(back == token, ("call %d got the reply %s of another call"):format(token, tostring(back)))
    end
  end
  local ps = {}
  for i = 1, 3 do ps[i] = spawn(bump, i) end
  bump(10)
  for _, h in ipairs(ps) do h:join() end
  T.eq(c:get(), 100 * (1 + 2 + 3 + 10))
end)

T.test("the manager's process is gone at the end of the run", function()
  local path = T.script([[
    local concur = require "concur"
    local M = concur.Manager:extend()
    M.register("Box", function(v) return {get = function(self) return v end} end)
    local m = M()
    print(m._server.pid, m:Box(7):get())]])
  local code, out = T.sh(bin .. " run " .. path)
  T.eq(code, 0)
  local pid, seven = out:match("^(%d+)\t(%d+)")
  T.eq(seven, "7")
  T.eq(P.pid_alive(tonumber(pid)), false)
  os.remove(path)
end)

T.test("misuse refused, never ignored: Pipe's duplex, Value's options, Thread's daemon, a list's table", function()
  local refused = T.refuses
  local r, w = concur.Pipe{duplex = false}
  T.raises("ValueError", w.recv, w)
  w:send(1); T.eq(r:recv(), 1)
  refused("duplex must be a boolean, not string", concur.Pipe, "x")
  refused("unknown option 'duplx' %(did you mean 'duplex'%?%)", concur.Pipe, {duplx = false})
  refused("unknown option 'lck' %(did you mean 'lock'%?%)", concur.Value, "i", 0, {lck = false})
  refused("daemon must be a boolean", concur.Thread, {target = print, daemon = 1})
  local m <close> = concur.Manager()
  refused("bad argument #1 to 'list' %(a list is made from a sequence", m.list, m, {a = 1})
  T.eq(#m:list{1, 2, 3}, 3)
  refused("bad argument #1 to 'dict' %(a table of its first items expected%)", m.dict, m, 5)
  T.eq(concur.Value("i").value, 0, "Value('i') starts at 0, as in Python")
  T.eq(m:Value("d").value, 0)
  local a = concur.Array("i", 3)
  getmetatable(a).__close(a)
  refused("attempt to use a closed Array", function() return a[1] end)
  refused("objects%[1%] is a number, which concur.wait cannot wait on", concur.wait, {1})
end)

T.done()
