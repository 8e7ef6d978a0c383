-- events/basics: wait with a timeout returns false; set releases every
-- waiter; clear makes them wait again.
local concur = require "concur"
io.stdout:setvbuf("line")

local e = concur.Event()
local t0 = concur.time()
local first = e:wait(0.5)
print("wait(0.5) on a clear event:", first)

local ps = {}
for i = 1, 3 do
  ps[i] = concur.Process{target = function()
    if not e:wait(30) then os.exit(1) end
    print("waiter " .. i .. " released")
  end}
  ps[i]:start()
end
concur.sleep(0.5)
e:set()
local released = 0
for _, p in ipairs(ps) do p:join(); if p.exitcode == 0 then released = released + 1 end end

e:clear()
local again = concur.Process{target = function()
  os.exit(e:wait(0.5) and 1 or 0) -- times out: the event is clear again
end}
again:start()
again:join()
print("released:", released, "waits again after clear:", again.exitcode == 0)
concur.report{first = first, released = released, waits_again = again.exitcode == 0,
              waited = concur.time() - t0}
