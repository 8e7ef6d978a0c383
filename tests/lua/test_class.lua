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

T.test("an instance met twice in a message arrives as one", function()
  local q = concur.Queue()
  local Point = concur.class("Point")
  local a = setmetatable({x = 1, y = 2}, Point)
  local t = {}
  q:put({a, t, a, t})
  local r = q:get()
  T.eq(getmetatable(r[1]), Point)
  T.eq(r[1] == r[3], true, "one instance")
  T.eq(r[2] == r[4], true, "and the table after it")
  T.eq(r[1].x + r[1].y, 3)
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
