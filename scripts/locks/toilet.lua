-- locks/toilet: three people, one toilet (a Lock); each stays 3 s. The "in"
-- and "out" lines never interleave, and the whole takes about 9 s.
local concur = require "concur"
io.stdout:setvbuf("line")

local lock = concur.Lock{name = "toilet"}

local function visit(i)
  local _ <close> = lock:hold()
  print(i .. " in")
  concur.sleep(3)
  print(i .. " out")
end

local t0 = concur.time()
local ps = {}
for i = 1, 3 do
  ps[i] = concur.Process{target = visit, args = {i}}
  ps[i]:start()
end
for _, p in ipairs(ps) do p:join() end
concur.report{elapsed = concur.time() - t0, scale = concur.time_scale}
