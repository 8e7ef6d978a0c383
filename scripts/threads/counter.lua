-- threads/counter: 200 threads each add 1 to a global under a Lock. Threads
-- share globals (processes do not).
local concur = require "concur"

n = 0
local lock = concur.Lock()
local threads = {}
for i = 1, 200 do
  threads[i] = concur.Thread{target = function()
    local _ <close> = lock:hold()
    local v = n
    concur.sleep(0.001) -- a blocking call: the GIL goes to another thread
    n = v + 1
  end}
  threads[i]:start()
end
for _, t in ipairs(threads) do t:join() end
print("n =", n)
concur.report{n = n}
