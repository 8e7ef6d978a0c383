-- processes/create: start a child two ways, a target function and a subclass.
local concur = require "concur"
io.stdout:setvbuf("line")

local function task(how)
  print(("%s: %s pid=%d"):format(how, concur.current_process().name, concur.getpid()))
end

local Worker = concur.Process:extend()
function Worker:run()
  print(("subclass: %s pid=%d n=%d"):format(self.name, concur.getpid(), self.n))
end

local p1 = concur.Process{target = task, args = {"target"}}
local p2 = Worker{n = 3}
p1:start()
p2:start()
print("main: started both, not waiting")
p1:join()
p2:join()
concur.report{exit1 = p1.exitcode, exit2 = p2.exitcode}
