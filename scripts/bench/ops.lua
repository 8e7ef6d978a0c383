-- bench/ops: one operation of the performance table, timed: -p op=NAME -p n=COUNT
-- [-p rounds=R: the operation R times, for a whole Pool map is one round].
-- Reports ops (operations per second); ops.py is the same in CPython.
local concur = require "concur"
local P = require "concur.private" -- the view, for the floor of a field's cost

local op = assert(concur.params.op, "-p op=NAME")
local n = concur.params.n or 1000
local rounds = concur.params.rounds or 1

local ops = {}

function ops.start_join()
  for _ = 1, n do
    local p = concur.Process{target = function() end}
    p:start(); p:join()
  end
end

local function queue_transfer(item)
  local q = concur.Queue(1000)
  local p = concur.Process{target = function() for _ = 1, n do q:put(item) end end}
  p:start()
  for _ = 1, n do q:get() end
  p:join()
end
function ops.queue_int() queue_transfer(42) end
function ops.queue_1k() queue_transfer(("x"):rep(1024)) end

function ops.pipe_oneway()
  local r, w = concur.Pipe(false)
  local p = concur.Process{target = function() for i = 1, n do w:send(i) end end}
  p:start()
  for _ = 1, n do r:recv() end
  p:join()
end

function ops.pipe_rtt()
  local a, b = concur.Pipe()
  local p = concur.Process{target = function() for _ = 1, n do b:send(b:recv()) end end}
  p:start()
  for i = 1, n do a:send(i); a:recv() end
  p:join()
end

function ops.lock()
  local l = concur.Lock()
  for _ = 1, n do l:acquire(); l:release() end
end

-- Not a table row: the fastest pair of calls of C methods Lua has (a
-- string's len, in Lua's own library), the bound of any Lua API's lock.
function ops.call_floor()
  local s = "x"
  for _ = 1, n do s:len(); s:len() end
end

-- Not a table row either: an increment's four calls (two methods, and a
-- read and a write of a field of a userdata, each a C function through
-- its metatable) doing nothing, from one process: the bound of any Lua
-- API's Value increment.
function ops.incr_floor()
  local s = "x"
  local u = debug.setmetatable(P.view({}, 1, 0), {__index = rawequal, __newindex = rawequal})
  for _ = 1, n do s:len(); u.value = u.value; s:len() end
end

function ops.value_incr()
  local v = concur.Value('i', 0)
  local function work()
    local lock = v:get_lock() -- as ops.py: the lock is found once
    for _ = 1, n // 2 do
      lock:acquire(); v.value = v.value + 1; lock:release()
    end
  end
  local p = concur.Process{target = work}
  p:start(); work(); p:join()
  assert(v.value == (n // 2) * 2)
end

function ops.manager_dict()
  local m <close> = concur.Manager()
  local d, lock = m:dict{count = 0}, m:Lock()
  local function work()
    for _ = 1, n // 2 do
      lock:acquire(); d.count = d.count + 1; lock:release()
    end
  end
  local p = concur.Process{target = work}
  p:start(); work(); p:join()
  assert(d.count == (n // 2) * 2)
end

-- What an operation works on, made before the clock starts.
local inputs = {}

function inputs.pool_map()
  local items = {}
  for i = 1, n do items[i] = i end
  return items
end

function ops.pool_map(items)
  local pool <close> = concur.Pool{processes = 2}
  local r = pool:map(function(x) return x + 1 end, items)
  assert(#r == n)
end

local function ident(x) return x end

function ops.apply_async()
  local pool <close> = concur.Pool{processes = 2}
  local rs = {}
  for i = 1, n do rs[i] = pool:apply_async(ident, {i}) end
  for i = 1, n do rs[i]:get() end
end

function ops.event_rtt()
  local ping, pong = concur.Event(), concur.Event()
  local p = concur.Process{target = function()
    for _ = 1, n do ping:wait(); ping:clear(); pong:set() end
  end}
  p:start()
  for _ = 1, n do ping:set(); pong:wait(); pong:clear() end
  p:join()
end

-- One side waits for either of two Queues (concur.wait), then answers.
function ops.wait_rtt()
  local q1, q2, q3 = concur.Queue(), concur.Queue(), concur.Queue()
  local p = concur.Process{target = function()
    for _ = 1, n do
      concur.wait({q1, q3})
      q2:put(q1:get())
    end
  end}
  p:start()
  for i = 1, n do q1:put(i); q2:get() end
  p:join()
end

function ops.thread_start_join()
  for _ = 1, n do
    local t = concur.Thread{target = function() end}
    t:start(); t:join()
  end
end

-- memory: the RSS of an idle child, and arena bytes per Lock and per Queue.
local function rss_kb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

if op == "memory" then
  local q = concur.Queue()
  local p = concur.Process{target = function() q:put(rss_kb()) end}
  p:start()
  local child = q:get()
  p:join()
  local keep, before = {}, concur.arena_stats().used
  for i = 1, 1000 do keep[i] = concur.Lock() end
  local per_lock = (concur.arena_stats().used - before) / 1000
  before = concur.arena_stats().used
  for i = 1, 1000 do keep[1000 + i] = concur.Queue() end
  local per_queue = (concur.arena_stats().used - before) / 1000
  print(("idle child RSS %d KiB; arena bytes: %.0f per Lock, %.0f per empty Queue"):format(
    child, per_lock, per_queue))
  concur.report{child_rss_kb = child, lock_bytes = per_lock, queue_bytes = per_queue, ops = 1}
  return
end

local fn = assert(ops[op], "unknown op " .. tostring(op))
local input = inputs[op] and inputs[op]()
local t0 = concur.time()
for _ = 1, rounds do fn(input) end
local elapsed = concur.time() - t0
local done = n * rounds
print(("%s: %d in %.3f s, %.0f ops/s"):format(op, done, elapsed, done / elapsed))
concur.report{ops = done / elapsed, n = done, elapsed = elapsed}
