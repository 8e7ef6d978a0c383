-- queues/joinable: eaters are daemons and call task_done(); the chefs join()
-- the queue, so the script ends when every dish was eaten.
local concur = require "concur"
io.stdout:setvbuf("line")

local q = concur.JoinableQueue()
local done = concur.Value('i', 0)

local function chef(name)
  for i = 1, 3 do
    concur.sleep(math.random() * 0.5)
    q:put(("%s's dish %d"):format(name, i))
  end
  q:join() -- until every dish put so far is task_done
  print(name .. ": all my dishes were eaten")
end

local function eater(name)
  while true do
    local dish = q:get()
    concur.sleep(math.random() * 0.5)
    done:with(function() done.value = done.value + 1 end)
    print(name .. " ate " .. dish)
    q:task_done()
  end
end

local cs = {}
for i = 1, 3 do cs[i] = concur.Process{target = chef, args = {"chef" .. i}} end
for i = 1, 2 do concur.Process{target = eater, args = {"eater" .. i}, daemon = true}:start() end
for _, p in ipairs(cs) do p:start() end
for _, p in ipairs(cs) do p:join() end
print("main: the chefs are done; dishes eaten:", done.value)
concur.report{eaten = done.value, left = q:qsize()}
-- The daemon eaters are terminated at the end of the script.
