-- threads/gil: the lessons' table. A CPU-bound job and an IO-bound job, ten
-- times each: serially, in ten threads, in ten processes. Threads share one
-- Lua state and its GIL, so they do not speed up CPU work but do speed up
-- waiting; processes speed up both (given cores).
local concur = require "concur"

local n = concur.params.n or 10
local work = concur.params.work or 8000000
local wait = concur.params.wait or 0.05

local function cpu()
  local x = 0
  for i = 1, work do x = x + i % 7 end
  return x
end

local function io_job() concur.sleep(wait) end

local function serial(job)
  local t0 = concur.time()
  for _ = 1, n do job() end
  return concur.time() - t0
end

local function threads(job)
  local t0 = concur.time()
  local ts = {}
  for i = 1, n do ts[i] = concur.Thread{target = job}; ts[i]:start() end
  for _, t in ipairs(ts) do t:join() end
  return concur.time() - t0
end

local function processes(job)
  local t0 = concur.time()
  local ps = {}
  for i = 1, n do ps[i] = concur.Process{target = job}; ps[i]:start() end
  for _, p in ipairs(ps) do p:join() end
  return concur.time() - t0
end

cpu() -- one job first, so that the serial run is not measured cold
local r = {
  serial_cpu = serial(cpu), thread_cpu = threads(cpu),
  -- The better of two: on a small machine another program takes a core now
  -- and then, and the processes need both.
  process_cpu = math.min(processes(cpu), processes(cpu)),
  serial_io = serial(io_job), thread_io = threads(io_job), process_io = processes(io_job),
}
print(("%-10s %10s %10s"):format("", "CPU", "IO"))
for _, how in ipairs{"serial", "thread", "process"} do
  print(("%-10s %9.3fs %9.3fs"):format(how, r[how .. "_cpu"], r[how .. "_io"]))
end
print(("(%d jobs each; %d cores)"):format(n, concur.cpu_count()))
r.cores = concur.cpu_count()
concur.report(r)
