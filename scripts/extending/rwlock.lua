-- extending/rwlock: readers look a price up while writers change it, under
-- an RWLock (core/rwlock.c, added as docs/extending.md says): the readers
-- are inside together, a writer is alone, and no reader sees a change half
-- made. Without it (-p lock=false) some do. Readers are processes and
-- threads; -p prefer_writers=true makes readers wait behind a waiting writer.
local concur = require "concur"
io.stdout:setvbuf("line")

local locked = concur.params.lock ~= false
local prefer = concur.params.prefer_writers == true
local readers, writers = concur.params.readers or 6, concur.params.writers or 2
local rw = concur.RWLock{name = "prices", prefer_writers = prefer}
-- The price, written twice: a reader that sees the two differ saw a change
-- half made.
local price = concur.RawArray('i', {100, 100})
local inside = concur.Value('i', 0)      -- readers inside now
local most = concur.Value('i', 0)        -- the most readers inside at once
local torn = concur.Value('i', 0)        -- reads of a change half made
local beside = concur.Value('i', 0)      -- reads while a writer was inside
local writing = concur.RawValue('i', 0)
local open = concur.Event{name = "open"}

local function read_price()
  if locked then rw:acquire_read() end
  local now = inside:get_lock():with(function()
    inside.value = inside.value + 1
    if inside.value > most.value then most.value = inside.value end
    return inside.value
  end)
  if writing.value ~= 0 then
    beside:get_lock():with(function() beside.value = beside.value + 1 end)
  end
  local a = price[1]
  concur.sleep(0.5) -- reading takes a while
  if price[2] ~= a then
    torn:get_lock():with(function() torn.value = torn.value + 1 end)
  end
  inside:get_lock():with(function() inside.value = inside.value - 1 end)
  if locked then rw:release() end
  return now
end

local function reader(i)
  open:wait()
  for _ = 1, 5 do
    local n = read_price()
    print(("reader %d: %d reading"):format(i, n))
  end
end

local function writer(i)
  open:wait()
  for k = 1, 3 do
    concur.sleep(0.3)
    if locked then rw:acquire_write() end
    writing.value = 1
    price[1] = price[1] + 1
    concur.sleep(0.1) -- a change takes a while too
    price[2] = price[1]
    writing.value = 0
    print(("writer %d: price %d (change %d)"):format(i, price[1], k))
    if locked then rw:release() end
  end
end

local parties = {}
for i = 1, readers do
  -- Half the readers are processes, half threads of this one.
  local kind = i % 2 == 1 and concur.Process or concur.Thread
  parties[#parties + 1] = kind{target = reader, args = {i}, name = "Reader-" .. i}
end
for i = 1, writers do
  parties[#parties + 1] = concur.Process{target = writer, args = {i}, name = "Writer-" .. i}
end
for _, p in ipairs(parties) do p:start() end
open:set()
for _, p in ipairs(parties) do p:join() end
print(("most readers at once: %d; torn reads: %d; reads beside a writer: %d"):format(
  most.value, torn.value, beside.value))
concur.report{most_readers = most.value, torn = torn.value, beside = beside.value,
              readers = readers, price = price[1],
              writes = writers * 3}
