-- threads/deadlock: five threads, two locks; each takes A then B, and then B
-- then A with a sleep between: sooner or later one holds A and waits for B
-- while another holds B and waits for A. One of them finds the cycle and
-- reports it: the run ends with exit 3 (outcome deadlock). With luck on
-- its side (one thread, -p threads=1, and no sleep, -p pause=0) the run
-- ends well, and the end of the run still warns that A and B are taken in
-- both orders. The fix, -p ordered=true: the second time too each thread
-- takes A before B, and no run deadlocks.
local concur = require "concur"
io.stdout:setvbuf("line")

local threads = concur.params.threads or 5
local pause = concur.params.pause or 0.1
local ordered = concur.params.ordered or false
local A, B = concur.Lock{name = "A"}, concur.Lock{name = "B"}
local locks = {A = A, B = B}

local function work(i)
  do
    local _a <close> = A:hold()
    print(i .. " has A")
    local _b <close> = B:hold()
    print(i .. " has B")
  end
  do
    local first, second = "B", "A"
    if ordered then first, second = "A", "B" end
    local _f <close> = locks[first]:hold()
    print(i .. " has " .. first .. " again")
    if pause > 0 then concur.sleep(pause) end
    local _s <close> = locks[second]:hold()
    print(i .. " has " .. second .. " again")
  end
end

local ts = {}
for i = 1, threads do
  ts[i] = concur.Thread{target = work, args = {i}}
  ts[i]:start()
end
for _, t in ipairs(ts) do t:join() end
print("no deadlock this time")
