-- pools/apply: Pool(3), ten synchronous apply calls: results in order, n^2,
-- and only three worker pids ever appear.
local concur = require "concur"

local pool <close> = concur.Pool{processes = 3}
local squares, pids, distinct = {}, {}, 0
for i = 1, 10 do
  local r = pool:apply(function(n) return {n * n, concur.getpid()} end, {i})
  squares[i] = r[1]
  if not pids[r[2]] then pids[r[2]] = true; distinct = distinct + 1 end
end
print("results:", table.concat(squares, " "))
print("distinct worker pids:", distinct)
concur.report{results = table.concat(squares, ","), pids = distinct}
