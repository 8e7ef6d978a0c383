-- processes/isolation: a child's change to a global stays in the child.
local concur = require "concur"
io.stdout:setvbuf("line")

n = 100

local p = concur.Process{target = function()
  n = 1
  print("child: n =", n)
  concur.report{child_n = n}
end}
p:start()
p:join()
print("parent: n =", n)
concur.report{parent_n = n}
