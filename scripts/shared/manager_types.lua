-- shared/manager_types: a dict and a list filled by pool tasks; a Namespace;
-- a Manager Lock and Value used from a Pool.
local concur = require "concur"

local m <close> = concur.Manager()
local d, l, ns = m:dict(), m:list(), m:Namespace{x = 1}
local lock, total = m:Lock(), m:Value('i', 0)

local pool = concur.Pool{processes = 3}
for i = 1, 10 do
  pool:apply_async(function(n)
    d[n] = n * 2
    l:append(n)
    local _ <close> = lock:hold()
    total.value = total.value + n
  end, {i})
end
pool:close()
pool:join()
ns.y = "set by the parent"

local keys = d:keys()
table.sort(keys)
local pairs_text = {}
for _, k in ipairs(keys) do pairs_text[#pairs_text + 1] = k .. "=" .. d[k] end
local items = l:totable()
table.sort(items)
print("dict:", table.concat(pairs_text, " "))
print("list:", table.concat(items, " "))
print("namespace:", ns.x, ns.y, "total:", total.value)
concur.report{dict = table.concat(pairs_text, ","), list = table.concat(items, ","),
              total = total.value, ns = ns.y}
