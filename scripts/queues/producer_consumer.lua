-- queues/producer_consumer: chefs make dishes, eaters eat them; after the
-- chefs are joined, one nil per eater says "no more".
local concur = require "concur"
io.stdout:setvbuf("line")

local chefs = concur.params.chefs or 3
local eaters = concur.params.eaters or 2
local per_chef = concur.params.per_chef or 3
local q = concur.Queue()
local eaten = concur.Queue()

local function chef(name)
  for i = 1, per_chef do
    concur.sleep(math.random() * 0.5)
    local dish = ("%s's dish %d"):format(name, i)
    q:put(dish)
    print(name .. " made " .. dish)
  end
end

local function eater(name)
  while true do
    local dish = q:get()
    if dish == nil then break end -- the sentinel
    concur.sleep(math.random() * 0.5)
    print(name .. " ate " .. dish)
    eaten:put(dish)
  end
end

local cs, es = {}, {}
for i = 1, chefs do cs[i] = concur.Process{target = chef, args = {"chef" .. i}} end
for i = 1, eaters do es[i] = concur.Process{target = eater, args = {"eater" .. i}} end
for _, p in ipairs(cs) do p:start() end
for _, p in ipairs(es) do p:start() end
for _, p in ipairs(cs) do p:join() end
for _ = 1, eaters do q:put(nil) end
for _, p in ipairs(es) do p:join() end

local seen, dupes, n = {}, 0, 0
while not eaten:empty() do
  local d = eaten:get()
  if seen[d] then dupes = dupes + 1 end
  seen[d] = true
  n = n + 1
end
print(("%d dishes made, %d eaten, %d twice"):format(chefs * per_chef, n, dupes))
concur.report{made = chefs * per_chef, eaten = n, twice = dupes}
