-- bench/explore: concur explore on a scenario, for make bench: how long it
-- takes to find the race (and in how many runs and preemptions), or how
-- many runs a second it tries when there is nothing to find.
--   concur run scripts/bench/explore.lua -p target="SCRIPT -p k=v" -p runs=N [-p check=EXPR]
local concur = require "concur"

-- The binary is the first word of the command line (arg's lowest index).
local first = 0
while arg[first - 1] do first = first - 1 end
local bin = arg[first]
local target = assert(concur.params.target, "-p target='SCRIPT -p k=v' is needed")
local runs = concur.params.runs or 1000
local check = concur.params.check
local cmd = ("%s explore %s --runs %d --jobs 2%s"):format(bin, target, runs,
  check and (" --check '" .. check .. "'") or "")
local t0 = concur.time()
local p = assert(io.popen(cmd .. " 2>&1"))
local out = p:read("a")
local _, _, code = p:close()
local wall = concur.time() - t0
local tried = tonumber(out:match(": (%d+) runs %(")) or 0
local rate = tonumber(out:match("([%d.]+) runs/s")) or 0
local found = code == 1 and out:find("first failure") ~= nil
io.write(out)
concur.report{found = found, runs = tried, runs_per_s = rate, wall = wall,
              preemptions = tonumber(out:match("%((%d+) preemptions?")),
              after = tonumber(out:match("after (%d+) runs"))}
if code ~= 0 and code ~= 1 then os.exit(1) end
