-- pools/apply_async: ten tasks of one second on three workers take about
-- ceil(10/3) = 4 task times, not 10.
local concur = require "concur"

local pool = concur.Pool{processes = 3}
local t0 = concur.time()
local results = {}
for i = 1, 10 do
  results[i] = pool:apply_async(function(n) concur.sleep(1) return n * n end, {i})
end
pool:close()
pool:join()
local values = {}
for i, r in ipairs(results) do values[i] = r:get() end
local elapsed = concur.time() - t0
print("results:", table.concat(values, " "))
print(("took %.3f s for 10 tasks of %.3f s on 3 workers"):format(elapsed, concur.time_scale))
concur.report{results = table.concat(values, ","), elapsed = elapsed, task = concur.time_scale}
