-- processes/cpu_count: cpu_count() and active_children() while three run.
local concur = require "concur"

print("cpu_count:", concur.cpu_count())
local ps = {}
local counted = concur.Event()
for i = 1, 3 do
  -- Each runs until the three are counted (or, scaled, a while has passed).
  ps[i] = concur.Process{target = function() counted:wait(100) end}
  ps[i]:start()
end
local kids = concur.active_children()
counted:set()
for _, c in ipairs(kids) do print("active:", c.name, c.pid) end
for _, p in ipairs(ps) do p:join() end
local after = #concur.active_children()
print("active after join:", after)
concur.report{cpus = concur.cpu_count(), active = #kids, active_after = after}
