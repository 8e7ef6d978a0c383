-- processes/join: three sleepers started together then joined take as long
-- as the longest; started and joined in turn, the sum.
local concur = require "concur"

local function sleeper(s) concur.sleep(s) end

local t0 = concur.time()
local ps = {}
for i = 1, 3 do
  ps[i] = concur.Process{target = sleeper, args = {i}}
  ps[i]:start()
end
for i = 1, 3 do ps[i]:join() end
local concurrent = concur.time() - t0

t0 = concur.time()
for i = 1, 3 do
  local p = concur.Process{target = sleeper, args = {i}}
  p:start()
  p:join()
end
local sequential = concur.time() - t0

print(("concurrent %.3f s, sequential %.3f s (time scale %g)"):format(
  concurrent, sequential, concur.time_scale))
concur.report{concurrent = concurrent, sequential = sequential}
