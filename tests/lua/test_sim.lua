-- test_sim: concur run --sim and concur explore (core/sched.c, bindings/lsched.c,
-- bindings/host/batch.lua): determinism, replay, virtual time, the finds, shrinking
local T = dofile("tests/lua/harness.lua")
local concur = require "concur"
local yaml = require "concur.yaml"
local bin = os.getenv("CONCUR") or "./build/concur"

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function params_of(p)
  local parts = {}
  local keys = {}
  for k in pairs(p or {}) do if k ~= "__marks" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = "-p " .. quote(k .. "=" .. tostring(p[k])) end
  return table.concat(parts, " ")
end

-- Runs under --sim, two at a time (the machine's two cores): everything
-- each gives (exit, stdout, stderr, its metrics and its scheduler's summary).
local function sim_runs(list)
  local base, cmds = os.tmpname(), {}
  for i, args in ipairs(list) do
    local f = base .. "." .. i
    cmds[#cmds + 1] = ("(CONCUR_METRICS=%s.m CONCUR_SIM_OUT=%s.s %s run --sim --timeout 60 %s "
      .. ">%s.o 2>%s.e; echo $? >%s.c) &"):format(f, f, bin, args, f, f, f)
    if i % 2 == 0 or i == #list then cmds[#cmds + 1] = "wait;" end
  end
  os.execute(table.concat(cmds, " "))
  local out = {}
  for i = 1, #list do
    local f = base .. "." .. i
    out[i] = {code = tonumber(read(f .. ".c")), out = read(f .. ".o"), err = read(f .. ".e"),
              metrics = read(f .. ".m"), sim = read(f .. ".s")}
    for _, x in ipairs{".c", ".o", ".e", ".m", ".s"} do os.remove(f .. x) end
  end
  os.remove(base)
  return out
end

local function sim_run(args) return sim_runs({args})[1] end

local function same(a, b, what)
  for _, k in ipairs{"code", "out", "err", "metrics", "sim"} do
    if a[k] ~= b[k] then
      error(("%s: the two runs differ in %s:\n--- first\n%s\n--- second\n%s"):format(
        what, k, tostring(a[k]):sub(-1500), tostring(b[k]):sub(-1500)), 2)
    end
  end
end

-- The Sanitize build runs each scenario several times slower: it compares
-- 5 seeds of each (and says so), the release build 20.
local SEEDS = (os.getenv("CONCUR_MODULE_PRELOAD") or "") ~= "" and 5 or 20
if SEEDS < 20 then print("test_sim: the Sanitize build compares 5 seeds of each scenario, not 20") end

T.test(("every simulable scenario of the catalogue gives the same run twice, for each of %d seeds")
  :format(SEEDS), function()
    local doc = yaml.load("config/scenarios.yaml")
    local n = 0
    for _, e in ipairs(doc.experiments) do
      if e.script and e.sim ~= false then
        local list = {}
        for seed = 1, SEEDS do
          local args = ("--seed %d %s %s"):format(seed, e.script, params_of(e.params))
          list[#list + 1] = args
          list[#list + 1] = args
        end
        local got = sim_runs(list)
        for seed = 1, SEEDS do
          local a, b = got[2 * seed - 1], got[2 * seed]
          same(a, b, e.name .. " seed " .. seed)
          assert(a.code == 0 or a.code == 3, e.name .. " seed " .. seed .. ": exit " ..
            tostring(a.code) .. "\n" .. a.err)
          assert(a.sim:find('"decisions":%d+'), e.name .. ": the summary is written")
          n = n + 1
        end
      end
    end
    assert(n >= 40 * SEEDS, "the catalogue's scenarios were run: " .. n)
  end)

T.test("different seeds give different schedules", function()
  local seen = {}
  for seed = 1, 10 do
    local r = sim_run(("--seed %d scripts/locks/toilet.lua"):format(seed))
    T.eq(r.code, 0, "exit\n" .. r.err)
    seen[r.sim:match('"schedule":"([^"]*)"')] = true
  end
  local k = 0
  for _ in pairs(seen) do k = k + 1 end
  assert(k >= 5, "ten seeds, at least five schedules: " .. k)
end)

-- Threads of two processes and a process of its own share a Lock, a Value
-- and a Queue: every party kind at once, scheduled.
local PARTIES = T.script([[
local concur = require "concur"
local lock, v, q = concur.Lock(), concur.Value('i', 0), concur.Queue()
local function work(who)
  for i = 1, 5 do
    lock:acquire()
    local x = v.value
    concur.sleep(0.001)
    v.value = x + 1
    lock:release()
    q:put(who .. ":" .. i)
  end
end
local function two_threads(who)
  local ts = {}
  for k = 1, 2 do
    ts[k] = concur.Thread{target = work, args = {who .. "t" .. k}}
    ts[k]:start()
  end
  for _, t in ipairs(ts) do t:join() end
end
local p1 = concur.Process{target = two_threads, args = {"P1"}}
local p2 = concur.Process{target = work, args = {"P2"}}
p1:start(); p2:start()
two_threads("M")
local got = {}
for _ = 1, 25 do got[#got + 1] = q:get(true, 5) end
p1:join(); p2:join()
print(table.concat(got, " "))
print("sum", v.value)
]])

T.test("threads of two processes and a process: the same run for a seed, every put, an exact sum",
  function()
    local orders = {}
    for seed = 1, 5 do
      local two = sim_runs{("--seed %d %s"):format(seed, PARTIES), ("--seed %d %s"):format(seed, PARTIES)}
      local a = two[1]
      same(a, two[2], "seed " .. seed)
      T.eq(a.code, 0, "exit\n" .. a.err)
      assert(a.out:find("\nsum\t25\n"), "the lock keeps the sum exact:\n" .. a.out)
      local puts = 0
      for _ in a.out:gmatch("%S+:%d") do puts = puts + 1 end
      T.eq(puts, 25, "every put is got")
      orders[a.out] = true
    end
    local k = 0
    for _ in pairs(orders) do k = k + 1 end
    assert(k >= 2, "five seeds, more than one order of the puts")
  end)

T.test("a failed run prints its schedule, and the replay is the same run", function()
  local a = sim_run("--seed 3 scripts/threads/deadlock.lua")
  T.eq(a.code, 3, "a deadlock\n" .. a.err)
  local schedule = a.err:match("replay: concur run %-%-sim %-%-replay '([^']*)'")
  assert(schedule and schedule ~= "", "the schedule is printed:\n" .. a.err)
  local b = sim_run("--replay " .. quote(schedule) .. " --seed 3 scripts/threads/deadlock.lua")
  T.eq(b.code, 3, "the replay deadlocks too")
  T.eq(b.out, a.out, "the same output")
  local function body(s) return (s:gsub("concur: %-%-sim seed[^\n]*\n$", "")) end
  T.eq(body(b.err), body(a.err), "the same report")
  T.eq(b.sim:match('"schedule":"([^"]*)"'), schedule, "the same decisions")
end)

T.test("sleeps and timeouts are virtual: seconds of them take milliseconds", function()
  local script = T.script([[
local concur = require "concur"
local l = concur.Lock()
local held, go = concur.Event(), concur.Event()
local p = concur.Process{target = function()
  l:acquire(); held:set(); go:wait(); l:release()
end}
p:start()
held:wait()
local t0 = concur.time()
concur.sleep(3)
local slept = concur.time() - t0
t0 = concur.time()
local got = l:acquire{timeout = 2}
local waited = concur.time() - t0
go:set()
p:join()
print(("slept %.3f waited %.3f got %s"):format(slept, waited, tostring(got)))
]])
  local t0 = concur.time()
  local r = sim_run(script)
  local wall = concur.time() - t0
  T.eq(r.code, 0, "exit\n" .. r.err)
  T.eq(r.out, "slept 3.000 waited 2.000 got false\n", "virtual seconds")
  assert(wall < 2.5, "5 virtual seconds took " .. wall .. " s of real time")
end)

-- Lua seeds its string hashes anew in each run, and next() follows them:
-- under --sim pairs() gives one order, in the main thread, a thread and a
-- process, whatever the run.
T.test("pairs() visits keys in one order in every run: numbers, strings, booleans", function()
  local script = T.script([[
local concur = require "concur"
local function keys(where)
  local t = {zeta = 1, alpha = 2, eta = 3, beta = 4, [3] = 5, [1.5] = 6, [true] = 7,
             [false] = 8, gamma = 9, delta = 10, theta = 11, eps = 12}
  t.eta = nil
  local o = {}
  for k, v in pairs(t) do o[#o + 1] = tostring(k) .. "=" .. v end
  print(where, table.concat(o, " "))
end
keys("main")
local th = concur.Thread{target = keys, args = {"thread"}}
th:start(); th:join()
local p = concur.Process{target = keys, args = {"process"}}
p:start(); p:join()
]])
  local want
  for run = 1, 4 do
    local r = sim_run("--seed 7 " .. script)
    T.eq(r.code, 0, "exit\n" .. r.err)
    want = want or r.out
    T.eq(r.out, want, "run " .. run .. " as the first")
  end
  local line = "1.5=6 3=5 alpha=2 beta=4 delta=10 eps=12 gamma=9 theta=11 zeta=1 false=8 true=7"
  T.eq(want, ("main\t%s\nthread\t%s\nprocess\t%s\n"):format(line, line, line), "the order")
end)

-- A killed process's descriptors are closed by the kernel after the kill,
-- in its own time: under --sim terminate() returns once they are, so that
-- what the run sees next does not depend on that time.
T.test("a terminated process's pipes show their end at once: to the terminating task, a thread, a thread of another process",
  function()
  local script = T.script([[
local concur = require "concur"
local r1, w1 = concur.Pipe(false)
local r2, w2 = concur.Pipe(false)
local r3, w3 = concur.Pipe(false)
local p = concur.Process{target = function() concur.sleep(10) end}
p:start()
-- A thread of another process waits on the third pipe; that process lets
-- go of the sending ends it inherited, so that only p holds them.
local other = concur.Process{target = function()
  w1:close(); w2:close(); w3:close()
  local eof
  local t = concur.Thread{target = function()
    local ok, e = pcall(r3.recv, r3)
    eof = not ok and concur.is(e, "EOF")
  end}
  t:start(); t:join()
  os.exit(eof and 0 or 1)
end}
other:start()
w1:close(); w2:close(); w3:close()
local seen
local t = concur.Thread{target = function()
  local ok, e = pcall(r2.recv, r2)
  seen = ("%s\t%s"):format(ok, concur.is(e, "EOF"))
end}
t:start()
concur.sleep(0.01)
p:terminate()
print("poll right after terminate", r1:poll(0))
local ok, e = pcall(r1.recv, r1)
print("recv", ok, concur.is(e, "EOF"))
t:join(); p:join(); other:join()
print("thread's recv", seen)
print("the other process's thread saw the end", other.exitcode == 0)
print("exitcode", p.exitcode)
]])
  for seed = 1, 3 do
    local r = sim_run(("--seed %d %s"):format(seed, script))
    T.eq(r.code, 0, "exit\n" .. r.err)
    T.eq(r.out, "poll right after terminate\ttrue\nrecv\tfalse\ttrue\nthread's recv\tfalse\ttrue\n"
      .. "the other process's thread saw the end\ttrue\nexitcode\t-15\n", "seed " .. seed)
  end
end)

T.test("a task blocked outside concur ends the run after 1 s, naming it and its line", function()
  local script = T.script([[
local concur = require "concur"
local e = concur.Event()
e:set()
os.execute("sleep 30")
]])
  local t0 = concur.time()
  local r = sim_run(script)
  T.eq(r.code, 1, "an error")
  assert(r.err:find("has not come back to concur for 1 s"), r.err)
  assert(r.err:find("MainThread, pid 1000%) after [^\n]*:3"), "the task and its line:\n" .. r.err)
  assert(concur.time() - t0 < 20, "it did not wait for the sleep")
end)

T.test("bad --sim options are refused with what to do", function()
  local cases = {
    {"--replay 12x scripts/locks/toilet.lua", "replay takes a schedule"},
    {"--strategy fair scripts/locks/toilet.lua", "strategy takes random, pct"},
    {"--seed 1.5 scripts/locks/toilet.lua", "seed takes a whole number"},
    {"--quantum -3 scripts/locks/toilet.lua", "quantum takes a whole number"},
  }
  for _, c in ipairs(cases) do
    local code, _, err = T.sh(bin .. " run " .. c[1])
    T.eq(code, 2, c[1])
    assert(err:find(c[2], 1, true), c[1] .. ": " .. err)
  end
  local code, _, err = T.sh(bin .. " explore scripts/locks/toilet.lua --runs 0")
  T.eq(code, 2, "explore --runs 0")
  assert(err:find("--runs takes a whole number of at least 1", 1, true), err)
  code, _, err = T.sh(bin .. " explore scripts/locks/toilet.lua --check 'metrics.x =='")
  T.eq(code, 2, "a check that does not compile")
  assert(err:find("--check does not compile", 1, true), err)
end)

-- explore's finds: each within a bound on runs (not on time), shrunk to
-- at most 2 preemptions, and the replay it prints fails the same way.
local function explore(args)
  local code, out, err = T.sh(bin .. " explore " .. args .. " --jobs 2")
  return code, out, err
end

local FINDS = {
  {"the ticket oversell", "scripts/locks/tickets.lua -p lock=false -p buyers=2 -p tickets=1",
   "metrics.sold <= metrics.tickets", "check false"},
  {"the Manager counter's lost update", "scripts/shared/manager_counter.lua -p lock=false -p processes=2",
   "metrics.count == 0", "check false"},
  {"the Value counter's lost update", "scripts/locks/counter_value.lua -p lock=false -p workers=2 -p each=1",
   "metrics.lost == 0", "check false"},
  {"the two-lock deadlock of threads", "scripts/threads/deadlock.lua -p threads=2 -p pause=0", nil,
   "deadlock"},
  {"the two-lock deadlock of processes", "scripts/processes/deadlock.lua", nil, "deadlock"},
}

for _, f in ipairs(FINDS) do
  T.test("explore finds " .. f[1] .. " within 200 runs, in at most 2 preemptions", function()
    local code, out, err = explore(f[2] .. " --runs 200" .. (f[3] and (" --check " .. quote(f[3])) or ""))
    T.eq(code, 1, "a failure is found\n" .. out .. err)
    local after = tonumber(out:match("after (%d+) runs"))
    assert(after and after <= 200, out)
    assert(out:find("first failure: seed %d+ %(" .. f[4] .. "%)"), out)
    local pre = tonumber(out:match("%((%d+) preemptions?"))
    assert(pre and pre <= 2, "shrunk to at most 2 preemptions:\n" .. out)
    local replay = out:match("replay:   (concur run [^\n]+)")
    assert(replay, out)
    local r = sim_run(replay:gsub("^concur run %-%-sim ", ""))
    if f[4] == "deadlock" then
      T.eq(r.code, 3, "the replay deadlocks\n" .. r.err)
    else
      T.eq(r.code, 0, "the replay runs\n" .. r.err)
      local m = require("cjson").decode(r.metrics)
      local ok = load("return " .. f[3], "check", "t", {metrics = m})()
      T.eq(ok, false, "the replay fails the check")
    end
  end)
end

T.test("pct: the same run for a seed, and explore --strategy pct finds the Value's lost update", function()
  local args = "--strategy pct --depth 3 --steps 40 --seed 7 scripts/locks/counter_value.lua -p lock=false -p workers=3 -p each=2"
  local two = sim_runs{args, args}
  T.eq(two[1].code, 0, "exit\n" .. two[1].err)
  same(two[1], two[2], "pct seed 7")
  assert(two[1].sim:find('"strategy":"pct"', 1, true), two[1].sim)
  local code, out, err = explore("scripts/locks/counter_value.lua -p lock=false -p workers=2 -p each=1 "
    .. "--strategy pct --runs 300 --check 'metrics.lost == 0'")
  T.eq(code, 1, "found\n" .. out .. err)
  local pre = tonumber(out:match("%((%d+) preemptions?"))
  assert(pre and pre <= 2, out)
end)

local ORDERED = T.script([[
local concur = require "concur"
local A, B = concur.Lock{name = "A"}, concur.Lock{name = "B"}
local function work()
  for _ = 1, 2 do
    local _a <close> = A:hold()
    local _b <close> = B:hold()
  end
end
local ts = {}
for i = 1, 2 do ts[i] = concur.Thread{target = work}; ts[i]:start() end
local p = concur.Process{target = work}
p:start()
for _, t in ipairs(ts) do t:join() end
p:join()
]])

local LOCKED = {
  {"the locked ticket sale", "scripts/locks/tickets.lua -p lock=true -p buyers=2 -p tickets=1",
   "metrics.sold <= metrics.tickets"},
  {"the locked Manager counter", "scripts/shared/manager_counter.lua -p lock=true -p processes=2",
   "metrics.count == 0"},
  {"the locked Value counter", "scripts/locks/counter_value.lua -p lock=true -p workers=2 -p each=2",
   "metrics.lost == 0"},
  {"two locks taken in one order", ORDERED, nil},
}

for _, f in ipairs(LOCKED) do
  T.test("explore finds nothing in " .. f[1] .. " over 100 runs", function()
    local code, out, err = explore(f[2] .. " --runs 100" .. (f[3] and (" --check " .. quote(f[3])) or ""))
    T.eq(code, 0, "nothing found\n" .. out .. err)
    assert(out:find("no failure in 100 schedules", 1, true), out)
    assert(out:find("%s+ok%s+100%s+100%.0%%"), "every run ok:\n" .. out)
  end)
end

T.test("a batch experiment with sim: runs over seeds and says which seeds failed", function()
  local file = T.file([[
experiments:
  - name: tickets
    script: scripts/locks/tickets.lua
    params: {lock: false, buyers: 2, tickets: 1}
    sim: {seeds: "5..9"}
    expect:
      check: metrics.sold <= metrics.tickets
]], ".yaml")
  local dir = os.tmpname()
  os.remove(dir)
  local code, out, err = T.sh(bin .. " batch " .. file .. " --jobs 2 --out " .. dir)
  T.eq(code, 1, "the expectation fails\n" .. out .. err)
  assert(out:find("%s+ok%s+5%s+100%.0%%%s+forbidden%s+5%-9"), "the seeds of the outcome:\n" .. out)
  assert(err:find("seed 5 failed %(check is false"), err)
  assert(err:find("replay it: concur run %-%-sim %-%-seed 5 %-%-replay "), err)
  os.execute("rm -rf " .. quote(dir))
end)

T.done()
