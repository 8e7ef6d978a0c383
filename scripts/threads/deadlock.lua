-- threads/deadlock: five threads, two locks; each takes A then B, and then B
-- then A with a sleep between: sooner or later one holds A and waits for B
-- while another holds B and waits for A. One of them finds the cycle and
-- reports it: the run ends with exit 3 (outcome deadlock).
local concur = require "concur"
io.stdout:setvbuf("line")

local A, B = concur.Lock(), concur.Lock()

local function work(i)
  do
    local _a <close> = A:hold()
    print(i .. " has A")
    local _b <close> = B:hold()
    print(i .. " has B")
  end
  do
    local _b <close> = B:hold()
    print(i .. " has B again")
    concur.sleep(0.1)
    local _a <close> = A:hold()
    print(i .. " has A again")
  end
end

local ts = {}
for i = 1, 5 do
  ts[i] = concur.Thread{target = work, args = {i}}
  ts[i]:start()
end
for _, t in ipairs(ts) do t:join() end
print("no deadlock this time")
