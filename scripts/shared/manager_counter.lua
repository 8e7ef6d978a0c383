-- shared/manager_counter: 100 processes each do d.count = d.count - 1 on a
-- Manager dict. With the lock (the default) the count ends at 0; without it
-- (-p lock=false) a read and a write are two operations, and updates are lost.
local concur = require "concur"

local use_lock = concur.params.lock ~= false
local n = concur.params.processes or 100
local m <close> = concur.Manager()
local d = m:dict{count = n}
local lock = m:Lock()
local go = m:Event()

local function work()
  go:wait() -- everybody starts at once, to give the race its chance
  if use_lock then
    local _ <close> = lock:hold()
    d.count = d.count - 1
  else
    d.count = d.count - 1
  end
end

local ps = {}
for i = 1, n do
  ps[i] = concur.Process{target = work}
  ps[i]:start()
end
go:set()
for _, p in ipairs(ps) do p:join() end
print(("final count %d (lock=%s)"):format(d.count, tostring(use_lock)))
concur.report{count = d.count, processes = n}
