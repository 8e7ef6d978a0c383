-- locks/counter_value: 20 processes add to a shared Value('d'). Under its
-- lock the sum is exact; without it (-p lock=false, with many increments
-- each) a read and a write race and the sum falls short.
local concur = require "concur"

local use_lock = concur.params.lock ~= false
local workers = concur.params.workers or 20
local each = concur.params.each or (use_lock and 1 or 2000)
local v = concur.Value('d', 0)
local go = concur.Event()

local function add()
  go:wait()
  for _ = 1, each do
    if use_lock then
      local _ <close> = v:get_lock():hold()
      v.value = v.value + 1
    else
      v.value = v.value + 1
    end
  end
end

local ps = {}
for i = 1, workers do
  ps[i] = concur.Process{target = add}
  ps[i]:start()
end
go:set()
for _, p in ipairs(ps) do p:join() end
local expected = workers * each
print(("sum %g of %d (lock=%s): %g lost"):format(v.value, expected, tostring(use_lock),
  expected - v.value))
concur.report{sum = v.value, expected = expected, lost = expected - v.value}
