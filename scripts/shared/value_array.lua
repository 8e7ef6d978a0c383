-- shared/value_array: Value('i'), Value('d'), Array('i', 6) and Array('c')
-- written by a child; the parent sees the writes.
local concur = require "concur"

local num = concur.Value('i', 0)
local real = concur.Value('d', 0.0)
local arr = concur.Array('i', 6)
local text = concur.Array('c', "hello")

local p = concur.Process{target = function()
  num.value = 42
  real.value = 3.1415
  for i = 1, #arr do arr[i] = -arr[i] + i * i end
  text.value = "HELLO"
end}
p:start()
p:join()
print(num.value, real.value, table.concat(arr:totable(), " "), text.value)
concur.report{num = num.value, real = real.value, arr = table.concat(arr:totable(), ","),
              text = text.value}
