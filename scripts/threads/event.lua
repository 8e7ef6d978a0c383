-- threads/event: an Event between threads: set, clear, is_set, wait.
local concur = require "concur"
io.stdout:setvbuf("line")

local e = concur.Event()
local woken = 0
local lock = concur.Lock()
local ts = {}
for i = 1, 5 do
  ts[i] = concur.Thread{target = function()
    e:wait()
    lock:with(function() woken = woken + 1 end)
  end}
  ts[i]:start()
end
concur.sleep(0.2)
print("before set:", woken, e:is_set())
e:set()
for _, t in ipairs(ts) do t:join() end
print("after set:", woken, e:is_set())
e:clear()
local waited = e:wait(0.2)
print("after clear, wait(0.2):", waited)
concur.report{before = 0, woken = woken, after_clear = waited}
