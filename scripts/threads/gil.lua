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

-- The processor time this process's reaped children have used, in seconds
-- (cutime and cstime in /proc, which Linux counts in 1/100 s).
local function children_cpu()
  local f = io.open("/proc/self/stat")
  local stat = f and f:read("a") or ""
  if f then f:close() end
  local fields = {}
  for x in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return ((tonumber(fields[14]) or 0) + (tonumber(fields[15]) or 0)) / 100
end

-- Each returns its wall time and how many cores it kept busy on average
-- (processor time over wall time): the GIL keeps threads at one, and
-- processes get as many as the machine has free.
local function threads(job)
  local t0, c0 = concur.time(), os.clock()
  local ts = {}
  for i = 1, n do ts[i] = concur.Thread{target = job}; ts[i]:start() end
  for _, t in ipairs(ts) do t:join() end
  local wall = concur.time() - t0
  return wall, (os.clock() - c0) / wall
end

local function processes(job)
  local t0, c0 = concur.time(), children_cpu()
  local ps = {}
  for i = 1, n do ps[i] = concur.Process{target = job}; ps[i]:start() end
  for _, p in ipairs(ps) do p:join() end
  local wall = concur.time() - t0
  return wall, (children_cpu() - c0) / wall
end

-- How many cores two plain busy processes get right now: what the machine
-- lets the processes have (a loaded machine gives fewer than it has).
local function free_cores()
  local t0, c0 = concur.time(), children_cpu()
  local ps = {}
  for i = 1, 2 do
    ps[i] = concur.Process{target = function()
      local x, t = 0, concur.time()
      while concur.time() - t < 0.25 do x = x + 1 end
    end}
    ps[i]:start()
  end
  for _, p in ipairs(ps) do p:join() end
  return (children_cpu() - c0) / (concur.time() - t0)
end

cpu() -- one job first, so that the serial run is not measured cold
local r = {serial_cpu = serial(cpu)}
r.thread_cpu, r.thread_cores = threads(cpu)
-- The better of two: on a small machine another program takes a core now
-- and then, and the processes need both.
local before = free_cores()
local wall1, cores1 = processes(cpu)
local wall2, cores2 = processes(cpu)
r.free_cores = math.min(before, free_cores())
r.process_cpu, r.process_cores = math.min(wall1, wall2), math.max(cores1, cores2)
r.serial_io = serial(io_job)
r.thread_io = threads(io_job)
r.process_io = processes(io_job)
print(("%-10s %10s %10s"):format("", "CPU", "IO"))
for _, how in ipairs{"serial", "thread", "process"} do
  print(("%-10s %9.3fs %9.3fs"):format(how, r[how .. "_cpu"], r[how .. "_io"]))
end
print(("(%d jobs each; %d cores; CPU work kept %.1f busy in threads, %.1f in processes)")
  :format(n, concur.cpu_count(), r.thread_cores, r.process_cores))
r.cores = concur.cpu_count()
concur.report(r)
