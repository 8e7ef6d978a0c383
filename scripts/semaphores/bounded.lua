-- semaphores/bounded: a BoundedSemaphore refuses a release above its start.
local concur = require "concur"

local b = concur.BoundedSemaphore(2)
b:acquire()
print("after acquire:", b:get_value())
b:release()
print("after release:", b:get_value())
local ok, err = pcall(b.release, b)
print("release above the start:", ok, tostring(err))
concur.report{ok = ok, kind = err.kind, value = b:get_value()}
