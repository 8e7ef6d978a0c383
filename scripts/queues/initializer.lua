-- queues/initializer: a Queue handed to the pool's workers by its
-- initializer; the workers put, the parent drains it.
local concur = require "concur"

local q = concur.Queue()
local function init(queue) _G.results = queue end

local pool = concur.Pool{processes = 3, initializer = init, initargs = {q}}
for i = 1, 6 do
  pool:apply_async(function(n) results:put({n, concur.getpid()}) end, {i})
end
pool:close()
pool:join()
local got, sum = 0, 0
while not q:empty() do
  local item = q:get()
  got = got + 1
  sum = sum + item[1]
end
print(("drained %d items, sum %d"):format(got, sum))
concur.report{got = got, sum = sum}
