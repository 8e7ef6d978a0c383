-- pools/map: map(square, 1..7) on four workers.
local concur = require "concur"

local function square(x) return x * x end
local pool <close> = concur.Pool{processes = 4}
local r = pool:map(square, {1, 2, 3, 4, 5, 6, 7})
print(table.concat(r, " "))
concur.report{results = table.concat(r, ",")}
