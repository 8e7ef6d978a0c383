-- threads/basics: two ways to start a thread; join with a timeout returns
-- while the thread still runs; default names; current_thread().
local concur = require "concur"
io.stdout:setvbuf("line")

local function task(how)
  print(how .. ": " .. concur.current_thread().name)
end

local t1 = concur.Thread{target = task, args = {"target"}}
local Sub = concur.Thread:extend()
function Sub:run() print("subclass: " .. self.name .. " n=" .. self.n) end
local t2 = Sub{n = 7}
t1:start(); t2:start()
t1:join(); t2:join()

-- The slow thread goes on until the main thread lets it (a sleep of the
-- lesson's, which a loaded machine at 100 times the speed may outlast).
local go = concur.Event()
local slow = concur.Thread{target = function() go:wait(); concur.sleep(1) end}
slow:start()
local ended = slow:join(0.1)
print("join(0.1) returned; ended:", ended, "alive:", slow:is_alive())
go:set()
slow:join()
print("main is", concur.current_thread().name, "alive after join:", slow:is_alive())
concur.report{name1 = t1.name, name2 = t2.name, ended_early = ended,
              alive_after = slow:is_alive(), main = concur.current_thread().name}
