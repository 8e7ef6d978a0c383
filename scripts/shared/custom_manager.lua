-- shared/custom_manager: a class registered on a Manager lives in the
-- manager's process; two children and the parent call inc() on one object.
local concur = require "concur"

local Counter = {}
Counter.__index = Counter
function Counter.new(start) return setmetatable({n = start}, Counter) end
function Counter:inc() self.n = self.n + 1; return self.n end
function Counter:value() return self.n end

local MyManager = concur.Manager:extend()
MyManager.register("Counter", Counter.new)

local m <close> = MyManager()
local c = m:Counter(5)
local ps = {}
for i = 1, 2 do
  ps[i] = concur.Process{target = function() for _ = 1, 10 do c:inc() end end}
  ps[i]:start()
end
c:inc()
for _, p in ipairs(ps) do p:join() end
print("counter:", c:value(), "served by", tostring(c))
concur.report{value = c:value()}
