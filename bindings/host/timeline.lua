-- timeline - concur timeline: a trace's threads as ASCII swimlanes, one lane each
--
-- Embedded in the concur binary and run in a plain Lua state with the
-- concur.host helpers (JSON through jansson). Reads Chrome trace-event
-- JSON as concur run --trace writes it: each thread's life is a span of
-- category "thread", and the spans inside it say what it did: "wait",
-- "hold", "gil", "sleep" (and "task", "wake", which count as running).
-- Counters
-- (a Semaphore's value, a Queue's length) get a lane of digits.
--
-- DESIGN. Time runs across, in columns of equal length. Each column of a
-- lane shows what the thread did for most of the column's time, a state
-- at each instant being the first of: waiting, holding a lock, waiting for
-- the GIL, sleeping, running, not alive. So a thread that sleeps while it holds a lock shows
-- the hold, and one that waits while it holds another shows the wait. The
-- chart depends on nothing but the trace: the same file gives the same
-- chart.
local host = require "concur.host"

local argv = table.move(arg, 3, #arg, 1, {})

local USAGE = "usage: concur timeline FILE.json [--width N]\n"
local EXIT_OK, EXIT_USAGE = 0, 2

local GLYPHS = {wait = ".", hold = "#", gil = "-", sleep = "z", run = "=", dead = " "}
local PRIORITY = {"wait", "hold", "gil", "sleep", "run"}
local LEGEND = {"= running", "# holding a lock", ". waiting", "- waiting for the GIL",
                "z sleeping", "(blank) not alive"}
local COUNTER_LEGEND = "0-9 a counter's value (+ above 9, - below 0)"

-- The legend's items, two spaces apart, in lines of at most width.
local function legend(width, counters)
  local items = table.move(LEGEND, 1, #LEGEND, 1, {})
  if counters then items[#items + 1] = COUNTER_LEGEND end
  local lines, cur = {}, ""
  for _, it in ipairs(items) do
    if cur ~= "" and #cur + 2 + #it > width then
      lines[#lines + 1] = cur
      cur = it
    else
      cur = cur == "" and it or (cur .. "  " .. it)
    end
  end
  lines[#lines + 1] = cur
  return table.concat(lines, "\n")
end

local function refuse(fmt, ...)
  io.stderr:write("concur: ", fmt:format(...), "\n")
  return EXIT_USAGE
end

-- "1.5 s", "250 ms", "40 us": a time in microseconds, shortly.
local function span_text(us)
  if us >= 1e6 then return ("%g s"):format(tonumber(("%.3g"):format(us / 1e6))) end
  if us >= 1e3 then return ("%g ms"):format(tonumber(("%.3g"):format(us / 1e3))) end
  return ("%g us"):format(tonumber(("%.3g"):format(us)))
end

-- The lanes of the trace: one per thread with a life, in the order of
-- their processes' and their own starts; labels are the process's name
-- for a process's main thread, else process/thread.
local function lanes_of(events)
  local pname, tname, lives = {}, {}, {}
  for _, e in ipairs(events) do
    if e.ph == "M" and e.name == "process_name" then pname[e.pid] = e.args.name end
    if e.ph == "M" and e.name == "thread_name" then tname[e.pid .. ":" .. e.tid] = e.args.name end
  end
  local lanes, by_key = {}, {}
  for _, e in ipairs(events) do
    if e.ph == "X" and e.cat == "thread" then
      local key = e.pid .. ":" .. e.tid
      local lane = by_key[key]
      if not lane then
        lane = {key = key, pid = e.pid, tid = e.tid, spans = {}, t0 = e.ts, t1 = e.ts + e.dur}
        by_key[key] = lane
        lanes[#lanes + 1] = lane
      end
      lives[#lives + 1] = e
      lane.spans[#lane.spans + 1] = {e.ts, e.ts + e.dur, "run"}
      lane.t0 = math.min(lane.t0, e.ts)
      lane.t1 = math.max(lane.t1, e.ts + e.dur)
    end
  end
  local states = {wait = "wait", hold = "hold", gil = "gil", sleep = "sleep"}
  for _, e in ipairs(events) do
    local state = e.ph == "X" and states[e.cat]
    local lane = state and by_key[e.pid .. ":" .. e.tid]
    if lane then lane.spans[#lane.spans + 1] = {e.ts, e.ts + e.dur, state} end
  end
  local threads_of = {}
  for _, lane in ipairs(lanes) do threads_of[lane.pid] = (threads_of[lane.pid] or 0) + 1 end
  for _, lane in ipairs(lanes) do
    local p = pname[lane.pid] or ("pid " .. lane.pid)
    local t = tname[lane.key] or ("tid " .. lane.tid)
    lane.label = (lane.pid == lane.tid and t == "MainThread") and p or
                 (threads_of[lane.pid] == 1 and p) or (p .. "/" .. t)
  end
  -- The main process first, then the others by pid (the order they were
  -- started in, but where pids wrap around).
  table.sort(lanes, function(a, b)
    if a.pid ~= b.pid then
      local am, bm = pname[a.pid] == "MainProcess", pname[b.pid] == "MainProcess"
      if am ~= bm then return am end
      return a.pid < b.pid
    end
    if (a.pid == a.tid) ~= (b.pid == b.tid) then return a.pid == a.tid end
    if a.t0 ~= b.t0 then return a.t0 < b.t0 end
    return a.tid < b.tid
  end)
  return lanes
end

-- Each column's glyph for one lane: the state that covers most of the
-- column, by a sweep over the spans' ends.
local function render_lane(lane, t0, width, col)
  local points = {}
  for _, s in ipairs(lane.spans) do
    points[#points + 1] = {s[1], 1, s[3]}
    points[#points + 1] = {s[2], -1, s[3]}
  end
  table.sort(points, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local open = {wait = 0, hold = 0, gil = 0, sleep = 0, run = 0}
  local cover = {}
  for c = 1, width do cover[c] = {} end
  local function state()
    for _, s in ipairs(PRIORITY) do
      if open[s] > 0 then return s end
    end
    return "dead"
  end
  -- Adds the time from a to b in state s to the columns it crosses.
  local function add(a, b, s)
    if b <= a then return end
    local c = math.max(1, math.floor((a - t0) / col) + 1)
    while c <= width do
      local lo, hi = t0 + (c - 1) * col, t0 + c * col
      if lo >= b then break end
      local d = math.min(b, hi) - math.max(a, lo)
      if d > 0 then cover[c][s] = (cover[c][s] or 0) + d end
      c = c + 1
    end
  end
  local prev = t0
  for _, p in ipairs(points) do
    add(prev, p[1], state())
    prev = math.max(prev, p[1])
    open[p[3]] = open[p[3]] + p[2]
  end
  -- The time a column is not alive counts as a state too: a thread that
  -- lived for less than half of a column is not shown in it, unless it
  -- would be shown nowhere.
  local out, shown, busiest, at = {}, false, 0, 1
  for c = 1, width do
    local alive = 0
    for _, s in ipairs(PRIORITY) do alive = alive + (cover[c][s] or 0) end
    local best, most = nil, 0
    for _, s in ipairs(PRIORITY) do
      local v = cover[c][s] or 0
      if v > most then best, most = s, v end
    end
    if alive > busiest then busiest, at = alive, c end
    if not best or col - alive > most then best = "dead" end
    shown = shown or best ~= "dead"
    out[c] = GLYPHS[best]
  end
  if not shown and busiest > 0 then
    local best, most = "run", 0
    for _, s in ipairs(PRIORITY) do
      local v = cover[at][s] or 0
      if v > most then best, most = s, v end
    end
    out[at] = GLYPHS[best]
  end
  return table.concat(out)
end

-- A counter's lane: the value at the end of each column (digits; "+"
-- above 9), blank before its first change.
local function render_counter(points, t0, width, col)
  table.sort(points, function(a, b) return a[1] < b[1] end)
  local out, i, v = {}, 1, nil
  for c = 1, width do
    local hi = t0 + c * col
    while points[i] and points[i][1] <= hi do
      v = points[i][2]
      i = i + 1
    end
    out[c] = v == nil and " " or (v > 9 and "+") or (v < 0 and "-") or tostring(math.floor(v))
  end
  return table.concat(out)
end

-- The axis under the chart: a mark every ten columns, and the times of
-- the first and the last.
local function axis(width, total, pad)
  local marks = {}
  for c = 1, width do marks[c] = (c - 1) % 10 == 0 and "|" or "-" end
  local right = span_text(total)
  local labels = "0" .. (" "):rep(math.max(1, width - 1 - #right)) .. right
  return (" "):rep(pad) .. table.concat(marks), (" "):rep(pad) .. labels
end

local function main()
  local path, width = nil, 80
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--width" then
      local n = tonumber(argv[i + 1] or "")
      if not n or n ~= math.floor(n) or n < 40 or n > 1000 then
        return refuse("--width takes a number of columns from 40 to 1000, not '%s'",
                      tostring(argv[i + 1]))
      end
      width, i = n, i + 2
    elseif a:sub(1, 1) == "-" then
      return refuse("unknown option '%s'\n%s", a, USAGE)
    elseif path then
      return refuse("timeline takes one trace file\n%s", USAGE)
    else
      path, i = a, i + 1
    end
  end
  if not path then return refuse("timeline needs a trace file\n%s", USAGE) end
  local f, err = io.open(path)
  if not f then return refuse("cannot read the trace '%s': %s", path, err) end
  local text = f:read("a")
  f:close()
  local doc, why = host.json_decode(text)
  if not doc then return refuse("'%s' is not JSON: %s", path, why) end
  -- The object form ({"traceEvents": [...]}) or the array form.
  local events = type(doc) == "table" and doc.traceEvents
  if events == nil and type(doc) == "table" and #doc > 0 then events = doc end
  if type(events) ~= "table" then
    return refuse("'%s' is not a trace: it has no traceEvents", path)
  end
  -- What a chart can use: events with the fields it reads, of their types.
  local good, n = {}, 0
  for k in pairs(events) do
    if math.type(k) == "integer" and k > n then n = k end
  end
  for i = 1, n do -- not ipairs: a null in the list is a hole
    local e = events[i]
    if type(e) == "table" and type(e.ph) == "string" and type(e.pid) == "number" and
       type(e.tid) == "number" and (type(e.ts) == "number" or e.ph == "M") then
      local ok = true
      if e.ph == "X" then ok = type(e.dur) == "number" and e.dur >= 0 end
      if e.ph == "M" then
        ok = type(e.args) == "table" and type(e.args.name) == "string"
      end
      if e.ph == "C" then ok = type(e.name) == "string" and type(e.args) == "table" end
      if ok then good[#good + 1] = e end
    end
  end
  events = good
  local lanes = lanes_of(events)
  if #lanes == 0 then
    return refuse("'%s' has no threads in it (is it a trace of concur run --trace?)", path)
  end
  local t0, t1 = math.huge, -math.huge
  for _, lane in ipairs(lanes) do
    t0, t1 = math.min(t0, lane.t0), math.max(t1, lane.t1)
  end
  local counters, cnames = {}, {}
  for _, e in ipairs(events) do
    if e.ph == "C" and type(e.args) == "table" then
      for _, v in pairs(e.args) do
        if type(v) == "number" then
          if not counters[e.name] then
            counters[e.name] = {}
            cnames[#cnames + 1] = e.name
          end
          table.insert(counters[e.name], {e.ts, v})
        end
      end
    end
  end
  local label = 0
  for _, lane in ipairs(lanes) do label = math.max(label, #lane.label) end
  for _, n in ipairs(cnames) do label = math.max(label, #n) end
  label = math.min(label, 24)
  local cols = width - label - 2
  if cols < 20 then return refuse("--width %d leaves no room for the chart", width) end
  local total = math.max(t1 - t0, 1)
  local col = total / cols
  local out = {}
  local function line(name, chart)
    if #name > label then name = name:sub(1, label - 1) .. "~" end
    out[#out + 1] = name .. (" "):rep(label - #name) .. " |" .. chart
  end
  for _, lane in ipairs(lanes) do line(lane.label, render_lane(lane, t0, cols, col)) end
  for _, n in ipairs(cnames) do line(n, render_counter(counters[n], t0, cols, col)) end
  local marks, labels = axis(cols, total, label + 2)
  out[#out + 1] = marks
  out[#out + 1] = labels
  out[#out + 1] = legend(width, #cnames > 0)
  io.stdout:write(table.concat(out, "\n"), "\n")
  return EXIT_OK
end

return main()
