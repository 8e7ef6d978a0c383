-- test_class: concur.class makes Lua classes whose instances travel (bindings/lua/class.lua)
local concur = require "concur"
local T = dofile("tests/lua/harness.lua")

-- A primitive written in Lua from existing ones: a CountDownLatch from a
-- Condition and a Value. Made before any party starts, so every one has it.
local Latch = concur.class("CountDownLatch", {
  init = function(self, n)
    self.cond = concur.Condition()
    self.count = concur.Value("i", n)
  end,
  count_down = function(self)
    local _ <close> = self.cond:hold()
    self.count.value = self.count.value - 1
    if self.count.value <= 0 then self.cond:notify_all() end
  end,
  wait = function(self, timeout)
    local _ <close> = self.cond:hold()
    return self.cond:wait_for(function() return self.count.value <= 0 end, timeout)
  end,
})

T.matrix("a Lua class passed through a Queue works in the party that gets it", function(spawn)
  local q = concur.Queue()
  local done = concur.Queue()
  local p = spawn(function()
    local latch = q:get()
    assert(getmetatable(latch) == Latch, "its class again")
    done:put(latch:wait(10) and "opened" or "timed out")
  end)
  local latch = Latch(2)
  q:put(latch)
  concur.sleep(0.02)
  latch:count_down()
  T.raises("Empty", done.get, done, false) -- still shut after one
  latch:count_down()
  T.eq(done:get(true, 10), "opened")
  p:join()
end)

local Point = concur.class("Point")
local Node = concur.class("Node", {init = function(self, v) self.v, self.me = v, self end})

T.matrix("instances met twice, or that refer to themselves, arrive so in each party", function(spawn)
  local q, back = concur.Queue(), concur.Queue()
  local p = spawn(function()
    local r = q:get(true, 10)
    local n = q:get(true, 10)
    back:put({getmetatable(r[1]) == Point, r[1] == r[3], r[2] == r[4], r[1].x + r[1].y,
              getmetatable(n) == Node, n.me == n, n.peer.peer == n, n.peer.me == n.peer,
              getmetatable(n.peer) == Node, n.v + n.peer.v})
  end)
  local a, t = setmetatable({x = 1, y = 2}, Point), {}
  q:put({a, t, a, t})
  local n = Node(5)
  n.peer = Node(6)
  n.peer.peer = n
  q:put(n)
  local got = back:get(true, 10)
  for i, want in ipairs{true, true, true, 3, true, true, true, true, true, 11} do
    T.eq(got[i], want, "item " .. i)
  end
  p:join()
end)

T.test("a class travels itself, by its name: an upvalue of a task", function()
  local pool = concur.Pool(1)
  T.eq(pool:apply(function() return getmetatable(Node(1)) == Node and Node(2).me.v end), 2)
  pool:close(); pool:join()
  local q = concur.Queue()
  q:put(Point)
  T.eq(q:get(), Point)
  local Late
  local p = concur.Process{target = function()
    local ok, err = pcall(q.get, q, true, 10)
    os.exit((not ok and tostring(err):find("holds the class 'LateClass2', which this process " ..
                                           "has not made", 1, true)) and 0 or 1)
  end}
  p:start()
  Late = concur.class("LateClass2")
  q:put(Late)
  p:join()
  T.eq(p.exitcode, 0, "the class a process lacks is named")
end)

T.test("__state alone gives the fields to make the instance of, and must be a table", function()
  local Slim = concur.class("Slim", {__state = function(self) return {keep = self.keep} end})
  local q = concur.Queue()
  local shared = {keep = 1}
  q:put({setmetatable({keep = shared, drop = 2}, Slim), shared})
  local r = q:get(true, 10)
  T.eq(getmetatable(r[1]), Slim)
  T.eq(r[1].keep, r[2], "a table met twice arrives as one")
  T.eq(r[1].drop, nil)
  local Bad = concur.class("BadState", {__state = function() return 5 end})
  T.refuses("__state of class 'BadState' returned a number: without __from_state it must return a table",
            q.put, q, setmetatable({}, Bad))
end)

T.test("a value that refers to itself through __state is refused, and is gone", function()
  local Odd = concur.class("Odd", {
    __state = function(self) return {me = self} end,
    __from_state = function(s) return setmetatable({}, getmetatable(s.me)) end,
  })
  local q = concur.Queue()
  q:put(setmetatable({}, Odd))
  q:put("next")
  local e = T.raises("ValueError", q.get, q, true, 10)
  assert(tostring(e):find("refers to itself through the state its class's __state gives"), tostring(e))
  -- As in Python, a get that cannot unpickle has taken the item.
  T.eq(q:get(true, 10), "next")
end)

T.test("a class may say what travels of its instances", function()
  local q = concur.Queue()
  local Cached = concur.class("Cached", {
    __state = function(self) return {key = self.key} end, -- the cache stays behind
    __from_state = function(s)
      return setmetatable({key = s.key, cache = {}, rebuilt = true}, getmetatable(s) or nil)
    end,
  })
  local c = setmetatable({key = "k", cache = {big = ("x"):rep(1000)}}, Cached)
  q:put(c)
  local r = q:get()
  T.eq(r.key, "k")
  T.eq(r.rebuilt, true)
  T.eq(next(r.cache), nil, "the cache did not travel")
end)

T.test("a process that has not made the class says which it lacks", function()
  local q, result = concur.Queue(), concur.Queue()
  local p = concur.Process{target = function()
    local ok, err = pcall(q.get, q, true, 10)
    result:put(ok and "received" or tostring(err))
  end}
  p:start() -- before the class exists: it has none of that name
  local Late = concur.class("LateClass")
  q:put(setmetatable({}, Late))
  local why = result:get(true, 10)
  assert(why:find("a message holds a value of class 'LateClass', which this process has not made",
                  1, true), why)
  p:join()
end)

T.test("bad classes are refused with what to do", function()
  T.refuses("concur.class takes a name", concur.class, 5)
  T.refuses("concur.class takes a name", concur.class, "")
  T.refuses("the class names concur.%* are concur's own", concur.class, "concur.Lock")
  T.refuses("the methods of class 'X' must be a table, not number", concur.class, "X", 5)
  -- A table with a metatable of no class still does not travel.
  local q = concur.Queue()
  T.raises("Unsendable", q.put, q, setmetatable({}, {}))
end)

T.done()
