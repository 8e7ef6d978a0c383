-- queues/basics: a Queue(3): three puts fill it, three gets come out in
-- order; a full queue refuses a put, an empty one a get (after the timeout).
local concur = require "concur"

local q = concur.Queue(3)
for i = 1, 3 do q:put("item " .. i) end
print("full:", q:full(), "size:", q:qsize())
local ok, err = pcall(q.put, q, "one more", false)
print("put without blocking:", tostring(err))
local full_kind = err.kind
local got = {}
for i = 1, 3 do got[i] = q:get() end
print("got in order:", table.concat(got, ", "), "empty:", q:empty())
local t0 = concur.time()
ok, err = pcall(q.get, q, true, 3)
local waited = concur.time() - t0
print(("get on an empty queue waited %.3f s: %s"):format(waited, tostring(err)))
concur.report{full_kind = full_kind, empty_kind = err.kind, order = table.concat(got, ","),
              waited = waited, scale = concur.time_scale}
