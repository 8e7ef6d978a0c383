-- semaphores/ktv: people share 4 rooms (a Semaphore(4)); the script measures
-- how many are ever inside at once. Without it (-p semaphore=false) all rush in.
local concur = require "concur"
io.stdout:setvbuf("line")

local use_sem = concur.params.semaphore ~= false
local people = concur.params.people or (use_sem and 13 or 6)
local rooms = concur.Semaphore(4, {name = "rooms"})
local inside = concur.Semaphore(0, {name = "inside"}) -- its value: how many are inside
local most = concur.Semaphore(0, {name = "most"})     -- its value: the most ever inside
local mark = concur.Lock{name = "mark"}
-- The doors open once everybody is there: on a busy machine the last
-- person could otherwise arrive after the first has left.
local open = concur.Event()

local function person(i)
  open:wait()
  if use_sem then rooms:acquire() end
  inside:release()
  local now = inside:get_value()
  mark:with(function()
    while most:get_value() < now do most:release() end
  end)
  print(("person %d sings (%d inside)"):format(i, now))
  concur.sleep(1 + math.random() * 4)
  inside:acquire()
  print(("person %d leaves"):format(i))
  if use_sem then rooms:release() end
end

local ps = {}
for i = 1, people do
  ps[i] = concur.Process{target = person, args = {i}}
  ps[i]:start()
end
open:set()
for _, p in ipairs(ps) do p:join() end
print("most inside at once:", most:get_value())
concur.report{max_inside = most:get_value(), people = people}
