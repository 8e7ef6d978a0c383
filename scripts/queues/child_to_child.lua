-- queues/child_to_child: one child puts, another gets; then parent and child.
local concur = require "concur"
io.stdout:setvbuf("line")

local q = concur.Queue()
local producer = concur.Process{target = function()
  for i = 1, 5 do q:put(i * 10) end
  print("producer: put 5 numbers")
end}
local sum = concur.Queue()
local consumer = concur.Process{target = function()
  local s = 0
  for _ = 1, 5 do s = s + q:get() end
  print("consumer: got them, sum", s)
  sum:put(s)
end}
producer:start(); consumer:start()
producer:join(); consumer:join()
local child_sum = sum:get()

-- Parent to child and back.
local back = concur.Queue()
local echo = concur.Process{target = function() back:put(q:get() .. " (seen by the child)") end}
echo:start()
q:put("hello from the parent")
local reply = back:get()
echo:join()
print("parent:", reply)
concur.report{child_sum = child_sum, reply = reply}
