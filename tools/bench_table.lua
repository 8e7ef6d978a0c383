-- bench_table: the performance table of make bench, from the runs of
-- config/bench.yaml and the machine's limits (tests/bench/limits.c).
--   concur run tools/bench_table.lua -p dir=build/bench -p limits=FILE
local concur = require "concur"
local cjson = require "cjson"

local dir = concur.params.dir or "build/bench"
local ops = {}
for line in io.lines(dir .. "/runs.jsonl") do
  local r = cjson.decode(line)
  local op, impl = r.experiment:match("^(.-)/(%w+)$")
  if not op or op:match("^explore_") then goto next end
  ops[op] = ops[op] or {concur = {}, cpython = {}, metrics = {}}
  if r.outcome == "ok" and r.metrics.ops then table.insert(ops[op][impl], r.metrics.ops) end
  ops[op].metrics[impl] = r.metrics
  ::next::
end
local limits = {}
if concur.params.limits then
  for line in io.lines(concur.params.limits) do
    local l = cjson.decode(line)
    limits[l.op] = l.ops
  end
end

local function median(t)
  if #t == 0 then return nil end
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local rows = {
  {"start_join", "process start+join", 5}, {"queue_int", "Queue put/get, small ints", 20},
  {"queue_1k", "Queue put/get, 1 KB strings", 20}, {"pipe_oneway", "Pipe send/recv, one way", 5},
  {"pipe_rtt", "Pipe round trip", 2.5}, {"lock", "Lock acquire+release", 2.5},
  {"value_incr", "Value increment, 2 processes", 10},
  {"manager_dict", "Manager dict increment, 2 processes", 100},
  {"pool_map", "Pool map, 200k items", 2}, {"apply_async", "Pool apply_async, 20k tasks", 10},
  {"event_rtt", "Event round trip", 5}, {"wait_rtt", "wait() on 2 Queues, round trip", nil},
  {"thread_start_join", "Thread start+join", nil},
}

local function fmt(v)
  if not v then return "-" end
  if v >= 1e6 then return ("%.2fM"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1fk"):format(v / 1e3) end
  return ("%.0f"):format(v)
end

print(("%-38s %10s %10s %8s %7s %5s %10s %8s"):format("operation (ops/s, medians of 3)",
  "concur", "CPython", "ratio", "target", "met", "C limit", "of limit"))
local missed = 0
for _, row in ipairs(rows) do
  local key, label, target = row[1], row[2], row[3]
  local o = ops[key] or {concur = {}, cpython = {}}
  local c, p = median(o.concur), median(o.cpython)
  local ratio = c and p and c / p
  local met = target and ratio and ratio >= target
  if target and not met then missed = missed + 1 end
  print(("%-38s %10s %10s %8s %7s %5s %10s %8s"):format(label, fmt(c), fmt(p),
    ratio and ("%.1fx"):format(ratio) or "-", target and ("%gx"):format(target) or "-",
    target and (met and "yes" or "NO") or "", fmt(limits[key]),
    limits[key] and c and ("%.0f%%"):format(100 * c / limits[key]) or "-"))
end
local floor, lock_py = ops.call_floor and median(ops.call_floor.concur),
                      ops.lock and median(ops.lock.cpython)
if floor and lock_py then
  print(("\nLua's own floor: two calls of a C method (s:len(); s:len()) run %s pairs a second,"
         .. " %.1fx CPython's Lock acquire+release"):format(fmt(floor), floor / lock_py))
end
local ifloor, value_py = ops.incr_floor and median(ops.incr_floor.concur),
                         ops.value_incr and median(ops.value_incr.cpython)
if ifloor and value_py then
  print(("Lua's own floor: an increment's four calls (two methods, a field read and written"
         .. " through C metamethods), doing nothing, run %s a second, %.1fx CPython's Value increment")
        :format(fmt(ifloor), ifloor / value_py))
end
local m = ops.memory and ops.memory.metrics or {}
if m.concur then
  print(("\nmemory: idle child RSS %d KiB (CPython %s KiB); arena bytes per Lock %.0f, per empty Queue %.0f")
    :format(m.concur.child_rss_kb, tostring(m.cpython and m.cpython.child_rss_kb or "-"),
            m.concur.lock_bytes, m.concur.queue_bytes))
end
-- Be the scheduler: explore's finds (target: under 1 s, at most 2
-- preemptions) and its runs a second where there is nothing to find.
local finds, nones = {}, {}
for line in io.lines(dir .. "/runs.jsonl") do
  local r = cjson.decode(line)
  local kind, what = r.experiment:match("^(explore_%a+)/(.+)$")
  if kind == "explore_find" then finds[#finds + 1] = {what, r.metrics, r.outcome} end
  if kind == "explore_none" then nones[#nones + 1] = {what, r.metrics, r.outcome} end
end
if #finds > 0 or #nones > 0 then
  print()
  print(("%-38s %10s %8s %12s %6s"):format("explore (be the scheduler)", "found in", "runs",
    "preemptions", "met"))
  for _, f in ipairs(finds) do
    local m = f[2] or {}
    local met = f[3] == "ok" and m.found and (m.wall or 99) < 1 and (m.preemptions or 99) <= 2
    if not met then missed = missed + 1 end
    print(("%-38s %9.2fs %8s %12s %6s"):format("finds " .. f[1], m.wall or 0,
      tostring(math.tointeger(m.after) or "-"), tostring(math.tointeger(m.preemptions) or "-"), met and "yes" or "NO"))
  end
  for _, f in ipairs(nones) do
    local m = f[2] or {}
    local met = f[3] == "ok" and m.found == false
    if not met then missed = missed + 1 end
    print(("%-38s %10s %8s %12s %6s"):format("nothing in locked " .. f[1],
      ("%.0f runs/s"):format(m.runs_per_s or 0), tostring(math.tointeger(m.runs) or "-"), "-", met and "yes" or "NO"))
  end
end
print(("%d of %d targets missed"):format(missed, 10 + #finds + #nones))
