-- processes/deadlock: two processes, two named locks; each takes one, waits
-- until the other has taken its own, then takes the other's. Neither can
-- go on: a thread of the cycle finds it, writes who holds what and waits
-- for what (by name, with the line), and the run ends with exit 3.
local concur = require "concur"
io.stdout:setvbuf("line")

local fork, knife = concur.Lock{name = "fork"}, concur.Lock{name = "knife"}
local both = concur.Barrier(2, {name = "both hold one"})

local function diner(first, second)
  first:acquire()
  print(concur.current_process().name .. " has " .. tostring(first))
  both:wait()
  second:acquire()
  print("never printed")
end

local p = concur.Process{name = "Left", target = diner, args = {fork, knife}}
local q = concur.Process{name = "Right", target = diner, args = {knife, fork}}
p:start(); q:start()
p:join(); q:join()
