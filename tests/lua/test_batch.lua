-- test_batch: concur batch and concur report, through the real binary.
local concur = require "concur"
local cjson = require "cjson"
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))

local function write(name, text)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function batch(yaml_text, opts)
  local file = write("batch.yaml", yaml_text)
  return T.sh(bin .. " batch " .. file .. " " .. (opts or ""))
end

local function records(out)
  local runs = {}
  for line in io.lines(out .. "/runs.jsonl") do runs[#runs + 1] = cjson.decode(line) end
  return runs
end

write("ok.lua", [[
local concur = require "concur"
print("hello " .. tostring(concur.params.n))
concur.report{n = concur.params.n, double = (concur.params.n or 0) * 2}
]])
write("spin.lua", [[
local concur = require "concur"
for i = 1, 2 do concur.Process{target = function() while true do end end}:start() end
while true do end
]])
write("fail.lua", [[error("scripted")]])

T.test("a batch runs a matrix, checks expectations, writes runs.jsonl", function()
  local out = dir .. "/r1"
  local code, stdout = batch(([[
defaults:
  repeat: 2
experiments:
  - name: matrix
    script: %s/ok.lua
    params: {n: [1, 2, 3]}
    expect:
      outcome: ok
      stdout: "hello %%d"
      check: "metrics.double == params.n * 2 and #runs == 2"
]]):format(dir), "--jobs 2 --out " .. out)
  T.eq(code, 0)
  assert(stdout:find("matrix%s+n=1%s+2%s+ok:2"), stdout)
  assert(stdout:find("met 2/2"), stdout)
  local runs = records(out)
  T.eq(#runs, 6)
  for _, r in ipairs(runs) do
    T.eq(r.outcome, "ok")
    T.eq(r.met, true)
    T.eq(r.metrics.double, r.params.n * 2)
    assert(r.wall > 0 and r.user and r.sys and r.maxrss_kb > 0)
    assert(r.stdout_tail:find("hello"))
  end
end)

T.test("outcomes: error, timeout (nothing left), crash; failed expectations exit 1", function()
  local out = dir .. "/r2"
  local code, stdout = batch(([[
experiments:
  - name: fails
    script: %s/fail.lua
    expect: {outcome: error}
  - name: spins
    script: %s/spin.lua
    timeout: 0.5
    expect: {outcome: timeout}
  - name: crashes
    command: "kill -SEGV $$"
    expect: {outcome: crash}
  - name: unmet
    command: ["true"]
    expect: {outcome: error}
  - name: peer
    command: 'echo "{\"x\": 3}" >> "$CONCUR_METRICS"; echo "n=$CONCUR_PARAM_N"'
    params: {n: 7}
    expect: {stdout: "n=7", check: metrics.x == 3}
]]):format(dir, dir), "--jobs 2 --out " .. out)
  T.eq(code, 1, "an unmet expectation")
  local by = {}
  for _, r in ipairs(records(out)) do by[r.experiment] = r end
  T.eq(by.fails.outcome, "error"); T.eq(by.fails.met, true)
  T.eq(by.spins.outcome, "timeout"); T.eq(by.spins.met, true)
  T.eq(by.crashes.outcome, "crash"); T.eq(by.crashes.signal, 11)
  T.eq(by.unmet.met, false)
  T.eq(by.unmet.reasons[1], "outcome ok, expected error")
  T.eq(by.peer.met, true)
  assert(stdout:find("FAILED 1/1: outcome ok, expected error"), stdout)
  -- This run's own spinners only: other runs of the tests may spin beside it.
  local _, left = T.sh("pgrep -f '" .. dir .. "/[s]pin.lua' | wc -l")
  T.eq(tonumber(left), 0, "nothing of a timed-out run is left")
end)

T.test("a script's own exit 3 or 4 is an error; a real deadlock or timeout is said so", function()
  write("exit3.lua", "os.exit(3)\n")
  write("exit4.lua", "os.exit(4)\n")
  write("deadlock.lua", [[
local concur = require "concur"
local a, b = concur.Lock(), concur.Lock()
local p = concur.Process{target = function() b:acquire(); concur.sleep(0.2); a:acquire() end}
p:start()
a:acquire(); concur.sleep(0.2); b:acquire()
]])
  local out = dir .. "/r3"
  local code = batch(([[
experiments:
  - {name: own3, script: %s/exit3.lua, expect: {outcome: error}}
  - {name: own4, script: %s/exit4.lua, expect: {outcome: error}}
  - {name: locked, script: %s/deadlock.lua, timeout: 30, expect: {outcome: deadlock}}
  - {name: slow, script: %s/spin.lua, timeout: 0.5, expect: {outcome: timeout}}
]]):format(dir, dir, dir, dir), "--jobs 2 --out " .. out)
  T.eq(code, 0, "every expectation met")
  local by = {}
  for _, r in ipairs(records(out)) do by[r.experiment] = r end
  T.eq(by.own3.outcome, "error"); T.eq(by.own3.exit, 3)
  T.eq(by.own4.outcome, "error"); T.eq(by.own4.exit, 4)
  T.eq(by.locked.outcome, "deadlock")
  T.eq(by.slow.outcome, "timeout")
end)

T.test("shards split the runs, each once, and report merges them", function()
  local text = ([[
defaults: {repeat: 3}
experiments:
  - name: a
    script: %s/ok.lua
    params: {n: [1, 2]}
  - name: b
    command: "true"
    params: {x: [1, 2, 3]}
]]):format(dir)
  local seen, total = {}, 0
  for i = 1, 3 do
    local code = batch(text, ("--shard %d/3 --out %s/s%d"):format(i, dir, i))
    T.eq(code, 0)
    for _, r in ipairs(records(dir .. "/s" .. i)) do
      local id = r.experiment .. " " .. r.combo .. " " .. r.rep
      assert(not seen[id], "run in two shards: " .. id)
      seen[id] = true
      total = total + 1
    end
  end
  T.eq(total, (2 + 3) * 3, "the union is the whole batch")
  local code, stdout = T.sh(("%s report %s/s1 %s/s2 %s/s3 --format json"):format(bin, dir, dir, dir))
  T.eq(code, 0)
  local rows = cjson.decode(stdout)
  T.eq(#rows, 5)
  for _, r in ipairs(rows) do T.eq(r.n, 3) end
  code = T.sh(("%s report %s/s1 %s/s1"):format(bin, dir, dir))
  T.eq(code, 0, "a run read twice is counted once")
end)

T.test("formats and outcome tables", function()
  local text = ([[
experiments:
  - name: tab
    script: %s/ok.lua
    params: {n: [1, 2]}
    repeat: 2
    outcome_of: n
    expect:
      check: metrics.n <= 2
      interesting: metrics.n == 2
]]):format(dir)
  local code, stdout = batch(text, "--out " .. dir .. "/f1")
  T.eq(code, 0)
  assert(stdout:find("tab n=2: outcomes of n"), stdout)
  assert(stdout:find("2%s+2%s+100.0%%%s+interesting"), stdout)
  assert(stdout:find("1%s+2%s+100.0%%%s+acceptable"), stdout)
  code, stdout = T.sh(bin .. " report " .. dir .. "/f1 --format md")
  assert(stdout:find("^| experiment | params |"), stdout)
  code, stdout = T.sh(bin .. " report " .. dir .. "/f1 --format csv")
  assert(stdout:find("^experiment,params,n,outcomes"), stdout)
  code, stdout = T.sh(bin .. " report " .. dir .. "/f1 --format json")
  T.eq(#cjson.decode(stdout), 2)
end)

T.test("numbers print as numbers, a multi-line check on one line", function()
  write("nums.lua", [[
local concur = require "concur"
concur.report{big = 7130.25, small = 0.05137, whole = 3.0}
]])
  local text = ([[
experiments:
  - name: nums
    script: %s/nums.lua
    expect:
      check: |
        metrics.big < 100
        and metrics.small > 0
]]):format(dir)
  local code, stdout = batch(text, "--out " .. dir .. "/f2")
  T.eq(code, 1)
  assert(stdout:find("big=7130") and stdout:find("small=0.0514") and stdout:find("whole=3"), stdout)
  assert(not stdout:find("e%+0"), stdout)
  assert(stdout:find("check is false: metrics.big < 100 and metrics.small > 0", 1, true), stdout)
end)

T.test("two batches started in the same second never share a default folder", function()
  local sub = dir .. "/same-second"
  assert(os.execute("mkdir -p " .. sub))
  write("same-second/b.yaml", "experiments:\n  - name: x\n    command: 'true'\n")
  local abs = bin:sub(1, 1) == "/" and bin or (os.getenv("PWD") .. "/" .. bin)
  local code = T.sh("cd " .. sub .. " && (" .. abs .. " batch b.yaml & " .. abs ..
                    " batch b.yaml & " .. abs .. " batch b.yaml & wait) 2>/dev/null")
  T.eq(code, 0)
  local _, out = T.sh("ls " .. sub .. "/results/*/runs.jsonl | wc -l")
  T.eq(tonumber(out), 3, "three folders, each with its runs")
end)

T.test("a huge param: a summary is linear in it", function()
  -- 100 KB travels (200 KB is refused: see the refusals below); the table
  -- cuts it (the whole value is in runs.jsonl).
  local out = dir .. "/huge"
  local x = ("a b "):rep(25000)
  local code = batch("experiments:\n  - name: big\n    command: 'test ${#CONCUR_PARAM_X} = 100000'\n"
               .. "    params: {x: '" .. x .. "'}\n", "--out " .. out)
  T.eq(code, 0, "the run saw the whole value")
  T.eq(records(out)[1].params.x, x)
  -- A record of 5 MB (a value no run could have, in a file someone wrote):
  -- the pattern that trimmed the table's lines took minutes on 50 KB.
  local r = records(out)[1]
  r.params.x = ("a b "):rep(5 << 18)
  r.combo = "x=" .. r.params.x
  local f = assert(io.open(dir .. "/huge.jsonl", "w"))
  f:write(cjson.encode(r), "\n")
  f:close()
  for _, format in ipairs{"table", "md", "csv", "json"} do
    local t0 = concur.time()
    local stdout
    code, stdout = T.sh(bin .. " report " .. dir .. "/huge.jsonl --format " .. format)
    T.eq(code, 0)
    -- A generous bound, that the quadratic trim (hours here) would not meet.
    assert(concur.time() - t0 < 60, format .. " took " .. (concur.time() - t0) .. " s")
    if format == "table" or format == "md" then
      assert(stdout:find("x=a b a b ", 1, true) and stdout:find("(5242880 bytes)", 1, true), format)
      assert(#stdout < 4000, format .. ": the cell is cut")
    else
      assert(#stdout > 5 << 20, format .. ": the whole value")
    end
  end
end)

T.test("long params are cut value by value: rows and progress lines still tell them apart", function()
  local out = dir .. "/cut"
  local big = ("z"):rep(50000)
  local code, stdout, stderr = batch("experiments:\n  - name: two\n    command: 'true'\n"
    .. "    params: {blob: '" .. big .. "', other: [1, 2]}\n", "--out " .. out)
  T.eq(code, 0)
  assert(stdout:find("blob=zzz[z.]* %(50000 bytes%) other=1") and
         stdout:find("blob=zzz[z.]* %(50000 bytes%) other=2"), stdout)
  for line in stderr:gmatch("[^\n]+") do assert(#line < 200, "a progress line of " .. #line) end
  T.eq(records(out)[1].params.blob, big)
end)

T.test("refused: a folder for a batch file", function()
  local code, _, err = T.sh(bin .. " batch " .. dir)
  T.eq(code, 2)
  assert(err:find("is a folder, not a batch file", 1, true), err)
end)

-- Sends sig to a batch once its stderr holds `ready` (a plain string);
-- returns its exit code, the seconds it took to end after the signal, and
-- its stdout and stderr.
local calls = 0
local function interrupted(yaml_text, opts, sig, ready)
  -- Files of this call only: the last call's stderr holds `ready` already.
  calls = calls + 1
  local file = write("int.yaml", yaml_text)
  local base = ("%s/int-%d"):format(dir, calls)
  local o, e, t = base .. ".out", base .. ".err", base .. ".t"
  local _, times = T.sh(("%s batch %s %s >%s 2>%s & pid=$!; "
    .. "until grep -qF '%s' %s; do sleep 0.05; done; date +%%s%%N; kill -%s $pid; "
    .. "wait $pid; echo $? >%s; date +%%s%%N"):format(bin, file, opts, o, e, ready, e, sig, t))
  local t0, t1 = times:match("(%d+)%s+(%d+)")
  local function slurp(path) local h = io.open(path); local s = h:read("a"); h:close(); return s end
  return tonumber(slurp(t)), (tonumber(t1) - tonumber(t0)) / 1e9, slurp(o), slurp(e)
end

T.test("Ctrl-C while runs run: they are killed and counted apart, exit 130 at once", function()
  local out = dir .. "/int1"
  local code, took, stdout, stderr = interrupted(([[
experiments:
  - {name: quick, command: 'true', repeat: 2}
  - {name: spin, script: %s/spin.lua, timeout: 60, repeat: 4}
]]):format(dir), "--jobs 2 --out " .. out, "INT", "[2/6] quick")
  T.eq(code, 130)
  assert(took < 5, "ended " .. took .. " s after the signal")
  local by = {}
  for _, r in ipairs(records(out)) do by[r.experiment] = (by[r.experiment] or 0) + 1 end
  T.eq(by.quick, 2); T.eq(by.spin, 2, "the two running spinners are recorded")
  for _, r in ipairs(records(out)) do
    if r.experiment == "spin" then T.eq(r.outcome, "interrupted"); T.eq(r.met, nil) end
  end
  assert(stdout:find("met 2/2") and stdout:find("2 interrupted"), stdout)
  assert(not stdout:find("FAILED"), stdout)
  assert(stderr:find("interrupted; the runs that ended are recorded, 2 not started", 1, true), stderr)
  local _, left = T.sh("pgrep -f '" .. dir .. "/[s]pin.lua' | wc -l")
  T.eq(tonumber(left), 0, "nothing of an interrupted run is left")
end)

for _, sig in ipairs{"INT", "TERM"} do
  T.test("SIG" .. sig .. " while a check loops: exit 130 at once, the runs recorded", function()
    local out = dir .. "/int-" .. sig
    -- Each check runs for a while, within the sandbox's budget: 40 of
    -- them take seconds.
    local code, took, _, stderr = interrupted([[
experiments:
  - name: slow
    command: 'true'
    repeat: 40
    expect: {check: "(function() local n = 0; for i = 1, 3000000 do n = n + i end; return n > 0 end)()"}
]], "--jobs 4 --out " .. out, sig, "[40/40]")
    T.eq(code, 130)
    assert(took < 5, "ended " .. took .. " s after the signal")
    T.eq(#records(out), 40)
    T.eq(records(out)[1].outcome, "ok")
    assert(stderr:find("interrupted while judging", 1, true), stderr)
  end)
end

-- Each malformed file is refused with exit 2, file:line:col, the experiment
-- and what to do, before anything runs.
local refusals = {
  {"malformed YAML", "experiments:\n  - name: x\n    script: [a\n", ":4:1: malformed YAML"},
  {"unknown key", "experiments:\n  - name: x\n    command: 'true'\n    repat: 3\n",
   ":4:5: experiment 'x': unknown key 'repat'; did you mean 'repeat'?"},
  {"unknown top key", "experimints: []\n", ":1:1: unknown key 'experimints'; did you mean 'experiments'?"},
  {"wrong type", "experiments:\n  - name: x\n    command: 'true'\n    repeat: many\n",
   ":4:5: experiment 'x': repeat must be a whole number, not many"},
  {"missing script", "experiments:\n  - name: x\n    script: nowhere.lua\n",
   ":3:5: experiment 'x': the script 'nowhere.lua' does not exist"},
  {"empty matrix", "experiments:\n  - name: x\n    command: 'true'\n    params: {n: []}\n",
   ":4:14: experiment 'x': param 'n' is an empty list"},
  {"check that does not compile", "experiments:\n  - name: x\n    command: 'true'\n    expect:\n      check: metrics.n ==\n",
   ":5:7: experiment 'x': check does not compile"},
  {"bad outcome", "experiments:\n  - name: x\n    command: 'true'\n    expect: {outcome: fine}\n",
   ":4:14: experiment 'x': outcome must be one of ok, error, deadlock, timeout, crash"},
  {"script and command", "experiments:\n  - name: x\n    command: 'true'\n    script: a.lua\n",
   "experiment 'x': give exactly one of script"},
  {"negative timeout", "experiments:\n  - name: x\n    command: 'true'\n    timeout: -1\n",
   ":4:5: experiment 'x': timeout must be greater than 0"},
  {"a param too large to travel", "experiments:\n  - name: big\n    command: 'true'\n    params: {x: '"
   .. ("a"):rep(200000) .. "'}\n", ":4:14: experiment 'big': param 'x' has a value of 200000 bytes"},
  {"an env value too large to travel", "experiments:\n  - name: e\n    command: 'true'\n    env: {BIG: '"
   .. ("e"):rep(140000) .. "'}\n", "env value 'BIG' has 140000 bytes"},
}
for _, case in ipairs(refusals) do
  T.test("refused: " .. case[1], function()
    local code, _, err = batch(case[2], "--out " .. dir .. "/never")
    T.eq(code, 2)
    assert(err:find(case[3], 1, true), ("expected %q in %q"):format(case[3], err))
    local f = io.open(dir .. "/never/runs.jsonl")
    T.eq(f, nil, "nothing ran")
  end)
end

T.test("--keep-traces keeps the trace of each run whose expectation failed, named in its line",
       function()
  local out = dir .. "/kt"
  local code = batch(([[
experiments:
  - name: good
    script: %s/ok.lua
    params: {n: 1}
  - name: bad
    script: %s/fail.lua
    repeat: 2
]]):format(dir, dir), "--jobs 2 --keep-traces --out " .. out)
  T.eq(code, 1, "a failed expectation")
  local kept = {}
  for _, r in ipairs(records(out)) do
    if r.experiment == "good" then
      T.eq(r.trace, nil, "a met run's trace is not kept")
    else
      T.eq(r.met, false)
      assert(r.trace and r.trace:find("/traces/bad%-%d%.json$"), tostring(r.trace))
      local f = assert(io.open(r.trace))
      local doc = cjson.decode(f:read("a"))
      f:close()
      assert(#doc.traceEvents > 0, "a trace")
      kept[r.trace] = true
    end
  end
  local n = 0
  for _ in pairs(kept) do n = n + 1 end
  T.eq(n, 2, "one trace for each failed run")
  local _, ls = T.sh("ls " .. out .. "/traces " .. out)
  T.eq(select(2, ls:gsub("%-%d%.json\n", "")), 2, "nothing else is left: " .. ls)
  assert(not ls:find("\ntmp\n"), "the scratch folder is gone: " .. ls)
end)

T.test("trace_per_outcome keeps one trace for each distinct outcome", function()
  write("alternate.lua", ([[
local concur = require "concur"
local path = %q
local f = io.open(path)
local n = f and tonumber(f:read("a")) or 0
if f then f:close() end
f = io.open(path, "w"); f:write(tostring(n + 1)); f:close()
concur.report{v = n %% 2}
]]):format(dir .. "/alternate.count"))
  local out = dir .. "/tpo"
  local code, stdout = batch(([[
experiments:
  - name: alt
    script: %s/alternate.lua
    repeat: 5
    outcome_of: v
    trace_per_outcome: true
]]):format(dir), "--jobs 1 --out " .. out)
  T.eq(code, 0, stdout)
  local by_value = {}
  for _, r in ipairs(records(out)) do
    if r.trace then
      T.eq(by_value[r.outcome_value], nil, "one trace per outcome")
      by_value[r.outcome_value] = r.trace
      T.eq(r.rep, r.outcome_value + 1, "the first run of each outcome")
    end
  end
  assert(by_value[0] and by_value[1], "both outcomes kept")
  code, _, err = batch([[
experiments:
  - name: cmd
    command: "true"
    trace_per_outcome: true
]], "--out " .. dir .. "/tpo2")
  T.eq(code, 2, "refused")
  assert(err:find("trace_per_outcome traces concur runs: it needs script:", 1, true), err)
  code, _, err = batch(([[
experiments:
  - name: alt
    script: %s/ok.lua
    trace_per_outcome: yes please
]]):format(dir), "--out " .. dir .. "/tpo3")
  T.eq(code, 2, "refused")
  assert(err:find("trace_per_outcome must be true or false", 1, true), err)
end)

T.test("bad options", function()
  local code, _, err = T.sh(bin .. " batch config/scenarios.yaml --shard 4/3")
  T.eq(code, 2); assert(err:find("%-%-shard takes I/N"), err)
  code, _, err = T.sh(bin .. " batch config/scenarios.yaml --format xml")
  T.eq(code, 2); assert(err:find("%-%-format takes"), err)
  code, _, err = T.sh(bin .. " batch config/scenarios.yaml --filter 'nothing*'")
  T.eq(code, 2); assert(err:find("matches no experiment"), err)
  code, _, err = T.sh(bin .. " report " .. dir .. "/none")
  T.eq(code, 2); assert(err:find("cannot read"), err)
end)

os.execute("rm -rf " .. dir)
T.done()
