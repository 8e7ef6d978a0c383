-- events/traffic_light: a light toggles an Event (set = green) every period;
-- cars wait for green, police cars wait at most 1 s and go anyway.
local concur = require "concur"
io.stdout:setvbuf("line")

local period = concur.params.period or 3
local cars = concur.params.cars or 6
local police = concur.params.police or 3
local green = concur.Event()

local light = concur.Process{daemon = true, target = function()
  while true do
    if green:is_set() then green:clear(); print("light: red")
    else green:set(); print("light: green") end
    concur.sleep(period)
  end
end}

local function car(i)
  concur.sleep(math.random() * period * 2)
  if not green:is_set() then print(("car %d waits for green"):format(i)) end
  green:wait()
  print(("car %d passes on green"):format(i))
end

local function police_car(i)
  concur.sleep(math.random() * period * 2)
  local g = green:wait(1)
  print(("police %d goes, the light is %s"):format(i, g and "green" or "red"))
end

light:start()
local ps = {}
for i = 1, cars do ps[#ps + 1] = concur.Process{target = car, args = {i}} end
for i = 1, police do ps[#ps + 1] = concur.Process{target = police_car, args = {i}} end
for _, p in ipairs(ps) do p:start() end
local passed = 0
for _, p in ipairs(ps) do
  p:join()
  if p.exitcode == 0 then passed = passed + 1 end
end
print(("%d of %d vehicles passed"):format(passed, #ps))
concur.report{passed = passed, vehicles = #ps}
