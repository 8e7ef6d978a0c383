-- extending/wait: one loop serves several sources at once with concur.wait
-- (core/ready.c): orders on a Queue from producer processes, alerts on a
-- Pipe from a monitor thread, and the producers' ends. It sleeps until one
-- of them has something, never polls, and stops once all are done.
local concur = require "concur"
io.stdout:setvbuf("line")

local producers = concur.params.producers or 3
local per = concur.params.orders or 4
local orders = concur.Queue(0, {name = "orders"})

local ps = {}
for i = 1, producers do
  ps[i] = concur.Process{name = "Producer-" .. i, target = function()
    for k = 1, per do
      concur.sleep(0.5 * math.random())
      orders:put(("order %d.%d"):format(i, k))
    end
  end}
  ps[i]:start()
end
-- Made after the producers start, so that the monitor's end is the only
-- sending end and its close is the receiver's EOF.
local alerts, alerting = concur.Pipe()
local monitor = concur.Thread{name = "Monitor", target = function()
  for k = 1, 3 do
    concur.sleep(0.4)
    alerting:send("alert " .. k)
  end
  alerting:close()
end}
monitor:start()

local served, alerted, ended, looks = 0, 0, 0, 0
local done = {}
local pipe_open = true
while pipe_open or ended < producers or not orders:empty() do
  local sources = {orders}
  if pipe_open then sources[#sources + 1] = alerts end
  for _, p in ipairs(ps) do
    if not done[p] then sources[#sources + 1] = p end
  end
  looks = looks + 1
  for _, ready in ipairs(concur.wait(sources, 30)) do
    if ready == orders then
      local ok, order = pcall(orders.get, orders, false)
      if ok then
        served = served + 1
        print("served " .. order)
      end
    elseif ready == alerts then
      local ok, alert = pcall(alerts.recv, alerts)
      if ok then
        alerted = alerted + 1
        print("monitor: " .. alert)
      else
        pipe_open = false -- EOF: the monitor is done
        print("monitor: done")
      end
    else
      done[ready] = true
      ended = ended + 1
      print(ready.name .. " ended with " .. tostring(ready.exitcode))
    end
  end
end
monitor:join()
for _, p in ipairs(ps) do p:join() end
print(("served %d orders, %d alerts, %d producers ended, in %d waits"):format(
  served, alerted, ended, looks))
concur.report{served = served, orders = producers * per, alerts = alerted, ended = ended,
              producers = producers, looks = looks}
