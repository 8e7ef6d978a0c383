-- batch - concur batch and concur report: experiments from YAML, run, summarised
--
-- Embedded in the concur binary and run in a plain Lua state with two helper
-- modules: concur.yaml (documents with line:col marks) and concur.host
-- (spawn into a process group, wait on pidfds, JSON through jansson, a
-- sandbox for expressions). Returns the process's exit code.
local host = require "concur.host"
local yaml = require "concur.yaml"

local command, binary = arg[1], arg[2]
local argv = table.move(arg, 3, #arg, 1, {})

local USAGE = [[
usage: concur batch FILE.yaml [--jobs N] [--out DIR] [--format table|md|csv|json]
                              [--filter GLOB] [--exclude GLOB] [--repeat N] [--shard I/N]
                              [--keep-traces]
       concur report DIR|FILE... [--format table|md|csv|json]
]]

local EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

-- The room for a run's params, all of them as JSON ($CONCUR_PARAMS): one
-- string of an environment holds 128 KiB (MAX_ARG_STRLEN), with its name.
local PARAM_ROOM = 128 * 1024 - 64

-- Refusals: raised as {refusal = message}, printed as "concur: message".
local function refuse(fmt, ...)
  error({refusal = fmt:format(...)}, 0)
end

local function nearest(key, known)
  local best, bd = nil, math.huge
  for _, k in ipairs(known) do
    local a, b = key, k
    local row = {}
    for j = 0, #b do row[j] = j end
    for i = 1, #a do
      local diag, prev = row[0], nil
      row[0] = i
      for j = 1, #b do
        prev = row[j]
        local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
        row[j] = math.min(prev + 1, row[j - 1] + 1, diag + cost)
        diag = prev
      end
    end
    if row[#b] < bd then best, bd = k, row[#b] end
  end
  return bd <= math.max(2, #key // 2) and best or nil
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do
    if type(k) ~= "string" or k:sub(1, 2) ~= "__" then ks[#ks + 1] = k end
  end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function is_list(t)
  return type(t) == "table" and (#t > 0 or (next(t) == "__marks" and next(t, "__marks") == nil))
end

--------------------------------------------------------------------------
-- The schema

local EXPERIMENT_KEYS = {"name", "script", "command", "params", "repeat", "timeout",
                         "time_scale", "env", "expect", "outcome_of", "exclusive", "strict_locks",
                         "trace_per_outcome", "sim"}
local SIM_KEYS = {"seeds", "strategy", "depth", "quantum", "steps"}
local SIM_STRATEGIES = {random = true, pct = true, first = true}
local DEFAULT_KEYS = {"params", "repeat", "timeout", "time_scale", "env", "expect",
                      "outcome_of", "exclusive", "strict_locks", "trace_per_outcome"}
local EXPECT_KEYS = {"outcome", "exit", "stdout", "check", "interesting"}
-- lock_order: a run with strict_locks whose locks were taken in orders that
-- can deadlock (concur run --strict-locks).
local OUTCOMES = {ok = true, error = true, deadlock = true, timeout = true, crash = true,
                  lock_order = true}

local function checker(file)
  local C = {}
  function C.at(t, key, what, fmt, ...)
    local mark = type(t) == "table" and t.__marks and t.__marks[key] or "1:1"
    refuse("%s:%s: %s%s", file, mark, what and (what .. ": ") or "", fmt:format(...))
  end
  function C.keys(t, known, what)
    for _, k in ipairs(sorted_keys(t)) do
      local ok = false
      for _, kk in ipairs(known) do ok = ok or kk == k end
      if not ok then
        local near = type(k) == "string" and nearest(k, known)
        C.at(t, k, what, "unknown key '%s'; %s", tostring(k),
          near and ("did you mean '" .. near .. "'?")
               or ("known keys are " .. table.concat(known, ", ")))
      end
    end
  end
  function C.number(t, key, what, min, integer)
    local v = t[key]
    if v == nil then return nil end
    if type(v) ~= "number" or (integer and math.type(v) ~= "integer") then
      C.at(t, key, what, "%s must be %s, not %s", key,
        integer and "a whole number" or "a number", tostring(v))
    end
    if v < min or (min == 0 and key ~= "exit" and v == 0) then
      C.at(t, key, what, "%s must be %s %s (got %s)", key,
        (min == 0 and key ~= "exit") and "greater than" or "at least", min, tostring(v))
    end
    return v
  end
  function C.scalar(v)
    local ty = type(v)
    return ty == "string" or ty == "number" or ty == "boolean"
  end
  return C
end

-- The expression's compile check, in the same sandbox the runs use.
local function compiles(expr)
  local ok, err = host.eval(expr)
  return ok, err
end

local function validate_expect(C, e, what)
  if e == nil then return {} end
  if type(e) ~= "table" or is_list(e) then
    C.at(e, nil, what, "expect must be a mapping (outcome:, exit:, stdout:, check:)")
  end
  C.keys(e, EXPECT_KEYS, what)
  if e.outcome ~= nil and not OUTCOMES[e.outcome] then
    C.at(e, "outcome", what, "outcome must be one of ok, error, deadlock, timeout, crash (got %s)",
      tostring(e.outcome))
  end
  C.number(e, "exit", what, 0, true)
  for _, k in ipairs{"stdout", "check", "interesting"} do
    if e[k] ~= nil and type(e[k]) ~= "string" then
      C.at(e, k, what, "%s must be a string", k)
    end
  end
  if e.stdout and not pcall(string.find, "", e.stdout) then
    C.at(e, "stdout", what, "stdout is not a valid Lua pattern: %s",
      select(2, pcall(string.find, "", e.stdout)))
  end
  for _, k in ipairs{"check", "interesting"} do
    if e[k] then
      local ok, err = compiles(e[k])
      if not ok then
        C.at(e, k, what, "%s does not compile: %s; write a Lua expression over metrics, params and runs",
          k, err)
      end
    end
  end
  return e
end

-- sim: false (the scenario cannot run under --sim: it waits on sockets)
-- or {seeds: N | "A..B" | [list], strategy:, depth:, quantum:}: one run per
-- seed, each under the scheduler.
local function validate_sim(C, e, what)
  local v = e.sim
  if v == nil or v == false then return nil end
  if type(v) ~= "table" or is_list(v) then
    C.at(e, "sim", what, "sim must be false or a mapping (seeds:, strategy:, depth:, quantum:)")
  end
  C.keys(v, SIM_KEYS, what .. ": sim")
  local seeds = {}
  local sv = v.seeds or 100
  if math.type(sv) == "integer" and sv >= 1 then
    for i = 1, sv do seeds[i] = i end
  elseif type(sv) == "string" and sv:match("^%d+%.%.%d+$") then
    local a, b = sv:match("^(%d+)%.%.(%d+)$")
    a, b = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
    if not a or not b or b < a or b - a >= 1000000 then
      C.at(v, "seeds", what, "seeds A..B needs A <= B and at most a million seeds (got %s)", sv)
    end
    for i = a, b do seeds[#seeds + 1] = i end
  elseif type(sv) == "table" and is_list(sv) and #sv > 0 then
    for i, x in ipairs(sv) do
      if math.type(x) ~= "integer" or x < 0 then
        C.at(sv, i, what, "each seed must be a whole number, 0 or more (got %s)", tostring(x))
      end
      seeds[i] = x
    end
  else
    C.at(v, "seeds", what, "seeds is a number of seeds (1 to N), a range \"A..B\" or a list of seeds")
  end
  if v.strategy ~= nil and not SIM_STRATEGIES[v.strategy] then
    C.at(v, "strategy", what, "strategy must be random, pct or first (got %s)", tostring(v.strategy))
  end
  C.number(v, "depth", what, 1, true)
  C.number(v, "quantum", what, 1, true)
  C.number(v, "steps", what, 1, true)
  if e["repeat"] ~= nil then
    C.at(e, "repeat", what, "a sim experiment runs once per seed: give seeds: instead of repeat:")
  end
  return {seeds = seeds, strategy = v.strategy or "random", depth = v.depth, quantum = v.quantum,
          steps = v.steps}
end

local function validate_params(C, p, what)
  if p == nil then return {} end
  if type(p) ~= "table" or is_list(p) then
    C.at(p, nil, what, "params must be a mapping of names to values or lists of values")
  end
  for _, k in ipairs(sorted_keys(p)) do
    local v = p[k]
    if type(v) == "table" then
      if not is_list(v) then
        C.at(p, k, what, "param '%s' must be a value or a list of values", k)
      end
      if #v == 0 then
        C.at(p, k, what, "param '%s' is an empty list: the matrix would have no runs; give it at least one value", k)
      end
      for i, x in ipairs(v) do
        if not C.scalar(x) then C.at(v, i, what, "param '%s' holds a %s; values must be plain", k, type(x)) end
      end
    elseif not C.scalar(v) then
      C.at(p, k, what, "param '%s' must be a value or a list of values", k)
    end
    for i, x in ipairs(type(v) == "table" and v or {v}) do
      if #tostring(x) > PARAM_ROOM then
        C.at(type(v) == "table" and v or p, type(v) == "table" and i or k, what,
          "param '%s' has a value of %d bytes; a run's params travel in its command line and "
          .. "environment, which hold %d bytes of them: give the path of a file instead",
          k, #tostring(x), PARAM_ROOM)
      end
    end
  end
  return p
end

local function validate(doc, file)
  local C = checker(file)
  if type(doc) ~= "table" or is_list(doc) then
    refuse("%s:1:1: a batch file is a mapping with 'experiments' (and optional 'defaults')", file)
  end
  C.keys(doc, {"defaults", "experiments", "order"})
  if doc.order ~= nil and doc.order ~= "grouped" and doc.order ~= "interleaved" then
    C.at(doc, "order", nil, "order must be grouped (each experiment's runs together) or interleaved (round after round)")
  end
  local d = doc.defaults or {}
  if type(d) ~= "table" or is_list(d) then C.at(doc, "defaults", nil, "defaults must be a mapping") end
  C.keys(d, DEFAULT_KEYS, "defaults")
  validate_params(C, d.params, "defaults")
  validate_expect(C, d.expect, "defaults")
  local exps = doc.experiments
  if type(exps) ~= "table" or not is_list(exps) then
    C.at(doc, "experiments", nil, "experiments must be a non-empty list")
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local out, seen = {}, {}
  for i, e in ipairs(exps) do
    if type(e) ~= "table" or is_list(e) then C.at(exps, i, nil, "each experiment must be a mapping") end
    local name = e.name
    if type(name) ~= "string" or name == "" then
      C.at(exps, i, nil, "experiment %d needs a name (name: some/name)", i)
    end
    local what = ("experiment '%s'"):format(name)
    if seen[name] then C.at(e, "name", what, "the name is used twice; names must be unique") end
    seen[name] = true
    C.keys(e, EXPERIMENT_KEYS, what)
    if (e.script == nil) == (e.command == nil) then
      C.at(e, "name", what, "give exactly one of script: (a Lua scenario) or command: (a peer program)")
    end
    local script = e.script
    if script ~= nil then
      if type(script) ~= "string" then C.at(e, "script", what, "script must be a path") end
      local f = io.open(script)
      if not f and script:sub(1, 1) ~= "/" then
        f = io.open(dir .. "/" .. script)
        if f then script = dir .. "/" .. script end
      end
      if not f then
        C.at(e, "script", what, "the script '%s' does not exist (paths are relative to the current folder or to %s)",
          e.script, dir)
      end
      f:close()
    end
    if e.command ~= nil and type(e.command) ~= "string" and not is_list(e.command) then
      C.at(e, "command", what, "command must be a shell command line or a list of arguments")
    end
    local params = validate_params(C, e.params, what)
    local merged = {}
    for k, v in pairs(d.params or {}) do if k ~= "__marks" then merged[k] = v end end
    for k, v in pairs(params) do if k ~= "__marks" then merged[k] = v end end
    local rep = C.number(e, "repeat", what, 1, true) or C.number(d, "repeat", "defaults", 1, true) or 1
    local timeout = C.number(e, "timeout", what, 0) or C.number(d, "timeout", "defaults", 0) or 60
    local ts = C.number(e, "time_scale", what, 0) or C.number(d, "time_scale", "defaults", 0) or 1
    local env = {}
    for _, src in ipairs{d.env or {}, e.env or {}} do
      if type(src) ~= "table" or is_list(src) then C.at(e, "env", what, "env must be a mapping of names to values") end
      for _, k in ipairs(sorted_keys(src)) do
        if not C.scalar(src[k]) then C.at(src, k, what, "env value '%s' must be plain", k) end
        env[k] = tostring(src[k])
        if #k + #env[k] > PARAM_ROOM then
          C.at(src, k, what, "env value '%s' has %d bytes; one string of an environment holds "
            .. "%d: give the path of a file instead", k, #env[k], PARAM_ROOM)
        end
      end
    end
    local expect = {}
    for k, v in pairs(validate_expect(C, d.expect, "defaults")) do expect[k] = v end
    for k, v in pairs(validate_expect(C, e.expect, what)) do expect[k] = v end
    for _, src in ipairs{{e, what}, {d, "defaults"}} do
      for _, key in ipairs{"exclusive", "strict_locks", "trace_per_outcome"} do
        if src[1][key] ~= nil and type(src[1][key]) ~= "boolean" then
          C.at(src[1], key, src[2], "%s must be true or false", key)
        end
      end
    end
    local strict = e.strict_locks
    if strict == nil then strict = d.strict_locks end
    local per_outcome = e.trace_per_outcome
    if per_outcome == nil then per_outcome = d.trace_per_outcome end
    if e.trace_per_outcome and not e.script then
      C.at(e, "trace_per_outcome", what, "trace_per_outcome traces concur runs: it needs script:")
    end
    local outcome_of = e.outcome_of or d.outcome_of
    if outcome_of ~= nil and type(outcome_of) ~= "string" then
      C.at(e, "outcome_of", what, "outcome_of names one metric")
    end
    local sim = validate_sim(C, e, what)
    if sim and not e.script then C.at(e, "sim", what, "sim schedules concur runs: it needs script:") end
    if e.sim ~= nil and e.sim ~= false and type(e.sim) ~= "table" then
      C.at(e, "sim", what, "sim must be false or a mapping (seeds:, strategy:, depth:, quantum:)")
    end
    out[#out + 1] = {name = name, script = script, command = e.command, params = merged,
                     sim = sim, simulable = e.sim ~= false,
                     rep = sim and #sim.seeds or rep, timeout = timeout, time_scale = ts, env = env,
                     expect = expect, outcome_of = outcome_of,
                     exclusive = e.exclusive == nil and d.exclusive or e.exclusive,
                     strict_locks = strict and e.script ~= nil,
                     trace_per_outcome = per_outcome and e.script ~= nil}
  end
  return out
end

--------------------------------------------------------------------------
-- Runs

local function combos(params)
  local keys = sorted_keys(params)
  local out = {{}}
  for _, k in ipairs(keys) do
    local values = type(params[k]) == "table" and params[k] or {params[k]}
    local next_out = {}
    for _, c in ipairs(out) do
      for _, v in ipairs(values) do
        local n = {}
        for kk, vv in pairs(c) do n[kk] = vv end
        n[k] = v
        next_out[#next_out + 1] = n
      end
    end
    out = next_out
  end
  return out
end

local function combo_key(p)
  local parts = {}
  for _, k in ipairs(sorted_keys(p)) do parts[#parts + 1] = k .. "=" .. tostring(p[k]) end
  return table.concat(parts, " ")
end

-- The same for people (progress lines, the table): each long value cut,
-- so that the other params still tell the combinations apart. The whole
-- values are in runs.jsonl.
local VALUE_SHOWN = 24
local function combo_label(p)
  local parts = {}
  for _, k in ipairs(sorted_keys(p)) do
    local v = tostring(p[k])
    if #v > VALUE_SHOWN + 16 then v = ("%s... (%d bytes)"):format(v:sub(1, VALUE_SHOWN), #v) end
    parts[#parts + 1] = k .. "=" .. v
  end
  return table.concat(parts, " ")
end

-- The runs, in a fixed order (so that shards are deterministic): each
-- experiment's together, or with order: interleaved, round after round
-- (every combination once, then again), so that slow drifts of the machine
-- touch every side alike.
local function expand(exps, interleaved)
  local cells, most = {}, 0
  for _, e in ipairs(exps) do
    for _, p in ipairs(combos(e.params)) do
      cells[#cells + 1] = {exp = e, params = p}
      most = math.max(most, e.rep)
    end
  end
  local runs = {}
  local function add(c, r)
    if r == 1 and #host.json_encode(c.params) > PARAM_ROOM then
      refuse("experiment '%s': its params (%s...) take %d bytes as JSON; a run's params travel "
        .. "in its command line and environment, which hold %d bytes of them", c.exp.name,
        combo_key(c.params):sub(1, 40), #host.json_encode(c.params), PARAM_ROOM)
    end
    runs[#runs + 1] = {exp = c.exp, params = c.params, combo = combo_key(c.params),
                       shown = combo_label(c.params), rep = r,
                       seed = c.exp.sim and c.exp.sim.seeds[r],
                       index = #runs + 1}
  end
  if interleaved then
    for r = 1, most do
      for _, c in ipairs(cells) do if r <= c.exp.rep then add(c, r) end end
    end
  else
    for _, c in ipairs(cells) do
      for r = 1, c.exp.rep do add(c, r) end
    end
  end
  return runs
end

local function read_file(path, limit)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read(limit or "a") or ""
  f:close()
  return s
end

local function tail(s, n)
  return #s > n and s:sub(-n) or s
end

local function read_metrics(path)
  local m = {}
  local f = io.open(path)
  if not f then return m end
  for line in f:lines() do
    local t = host.json_decode(line)
    if type(t) == "table" then for k, v in pairs(t) do m[k] = v end end
  end
  f:close()
  return m
end

local function argv_of(run, files)
  local e = run.exp
  if e.script then
    local a = {binary, "run", e.script, "--time-scale", tostring(e.time_scale),
               "--timeout", tostring(e.timeout)}
    if e.strict_locks then a[#a + 1] = "--strict-locks" end
    if run.seed then
      local sim = e.sim
      table.move({"--sim", "--seed", tostring(run.seed), "--strategy", sim.strategy}, 1, 5, #a + 1, a)
      if run.replay then table.move({"--replay", run.replay}, 1, 2, #a + 1, a) end
      if sim.depth then table.move({"--depth", tostring(sim.depth)}, 1, 2, #a + 1, a) end
      if sim.quantum then table.move({"--quantum", tostring(sim.quantum)}, 1, 2, #a + 1, a) end
      if sim.steps then table.move({"--steps", tostring(sim.steps)}, 1, 2, #a + 1, a) end
    end
    if run.trace then
      a[#a + 1] = "--trace"
      a[#a + 1] = run.trace
    end
    for _, k in ipairs(sorted_keys(run.params)) do
      a[#a + 1] = "-p"
      a[#a + 1] = k .. "=" .. tostring(run.params[k])
    end
    return a
  end
  if type(e.command) == "string" then return {"/bin/sh", "-c", e.command} end
  local a = {}
  for i, v in ipairs(e.command) do a[i] = tostring(v) end
  return a
end

local function env_of(run, files)
  local env = {CONCUR_METRICS = files.metrics, CONCUR_STATUS = files.status,
               CONCUR_TIME_SCALE = tostring(run.exp.time_scale),
               CONCUR_PARAMS = host.json_encode(run.params), CONCUR_SIM_OUT = files.sim}
  for k, v in pairs(run.params) do env["CONCUR_PARAM_" .. k:upper()] = tostring(v) end
  for k, v in pairs(run.exp.env) do env[k] = v end
  return env
end

-- A concur run says why its supervisor ended it ($CONCUR_STATUS): a
-- script's own os.exit(3) or os.exit(4) is an error, not a deadlock or a
-- timeout. A command that is not concur has its exit code alone.
local function classify(run, info, killed, files)
  if killed then return "timeout" end
  if info.signal then return "crash" end
  local code = info.exit
  local cause = (read_file(files.status, 64) or ""):match("^([%a_]+)")
  if cause == "deadlock" or cause == "timeout" or cause == "interrupted"
     or cause == "lock_order" then
    return cause
  end
  if code == 0 then return "ok" end
  if not run.exp.script and code == 3 then return "deadlock" end
  if not run.exp.script and code == 4 then return "timeout" end
  return "error"
end

-- Fills the run's results from what the finished process left.
local function finish(run, info, killed, files)
  run.wall = host.now() - run.started
  run.outcome = classify(run, info, killed, files)
  run.exit, run.signal = info.exit, info.signal
  run.user, run.sys, run.maxrss_kb = info.user, info.sys, info.maxrss_kb
  run.metrics = read_metrics(files.metrics)
  if run.seed then
    local sim = host.json_decode(read_file(files.sim, 1 << 20))
    run.sim = type(sim) == "table" and sim or nil
  end
  local out = read_file(files.stdout, 1 << 20)
  run.stdout_tail = tail(out, 2000)
  run.stderr_tail = tail(read_file(files.stderr, 1 << 20), 2000)
  run.stdout_full = out
  for _, f in pairs(files) do os.remove(f) end
end

local function progress(state, run)
  local done, total, failed = state.done, state.total, state.failed
  if state.tty then
    local width = 30
    local filled = math.floor(width * done / total)
    local elapsed = host.now() - state.t0
    local eta = done > 0 and elapsed / done * (total - done) or 0
    io.stderr:write(("\r[%s%s] %d/%d  failed %d  ETA %ds "):format(
      ("#"):rep(filled), ("."):rep(width - filled), done, total, failed, math.ceil(eta)))
    if done == total then io.stderr:write("\n") end
  else
    io.stderr:write(("[%d/%d] %s %s#%d: %s %.2fs\n"):format(done, total, run.exp.name,
      run.shown ~= "" and (run.shown .. " ") or "", run.rep, run.outcome, run.wall))
  end
  io.stderr:flush()
end

local function execute(runs, jobs, tmpdir, keep_traces, quiet)
  local state = {done = 0, total = #runs, failed = 0, tty = host.isatty(2), t0 = host.now()}
  local queue, running = 1, {}
  local interrupted = false
  local function stop()
    interrupted = true
    for _, r in ipairs(running) do host.killpg(r.pid); r.killed = true; r.deadline = -1 end
  end
  while queue <= #runs or #running > 0 do
    if host.take_interrupt() and not interrupted then stop() end
    while queue <= #runs and #running < jobs and not interrupted do
      local run = runs[queue]
      -- An exclusive run (a timing that needs the cores) starts alone, and
      -- nothing starts beside it.
      if (run.exp.exclusive and #running > 0)
         or (running[1] and running[1].run.exp.exclusive) then
        break
      end
      queue = queue + 1
      local base = ("%s/run-%d"):format(tmpdir, run.index)
      local files = {stdout = base .. ".out", stderr = base .. ".err", metrics = base .. ".metrics",
                     status = base .. ".status", sim = run.seed and base .. ".sim" or nil}
      -- Traced when its trace may be kept (it is kept or removed once
      -- the run is judged).
      if run.exp.script and (keep_traces or run.exp.trace_per_outcome) then
        run.trace = base .. ".trace.json"
      end
      run.started = host.now()
      local pid, fd = host.spawn{argv = argv_of(run, files), env = env_of(run, files),
                                 stdout = files.stdout, stderr = files.stderr}
      -- concur run stops itself at its timeout; this kill is the backstop.
      local grace = run.exp.script and 5 or 0
      running[#running + 1] = {run = run, pid = pid, fd = fd, files = files,
                               deadline = run.started + run.exp.timeout + grace}
    end
    local fds, soonest = {}, math.huge
    for i, r in ipairs(running) do
      fds[i] = r.fd
      soonest = math.min(soonest, r.deadline)
    end
    local ok, which = pcall(host.wait_any, fds, math.max(0, soonest - host.now()))
    if (host.take_interrupt() or not ok) and not interrupted then stop() end
    if not ok then which = nil end
    local now = host.now()
    for i = #running, 1, -1 do
      local r = running[i]
      if i == which or r.deadline <= now then
        if i ~= which then host.killpg(r.pid); r.killed = true end
        local info = host.reap(r.pid, r.fd)
        host.killpg(r.pid) -- whatever of its group is left
        host.close(r.fd)
        finish(r.run, info, r.killed and not interrupted, r.files)
        if interrupted then r.run.outcome = "interrupted" end
        table.remove(running, i)
        state.done = state.done + 1
        if r.run.outcome ~= (r.run.exp.expect.outcome or "ok") and r.run.outcome ~= "interrupted" then
          state.failed = state.failed + 1
        end
        if not quiet then progress(state, r.run) end
      end
    end
    if interrupted and #running == 0 then break end
  end
  return not interrupted
end

--------------------------------------------------------------------------
-- Expectations, per run, once every run of its combination is known

local function public_run(r)
  return {outcome = r.outcome, exit = r.exit, wall = r.wall, metrics = r.metrics}
end

local function judge(runs)
  local groups = {}
  for _, r in ipairs(runs) do
    if r.outcome == "interrupted" then
      -- Neither met nor failed: counted apart, and not among the runs
      -- that a check sees.
      r.stdout_full = nil
    else
      local k = r.exp.name .. "\0" .. r.combo
      groups[k] = groups[k] or {}
      table.insert(groups[k], r)
    end
  end
  for _, g in pairs(groups) do
    local pub = {}
    for i, r in ipairs(g) do pub[i] = public_run(r) end
    for _, r in ipairs(g) do
      local e, reasons = r.exp.expect, {}
      if r.outcome ~= (e.outcome or "ok") then
        reasons[#reasons + 1] = ("outcome %s, expected %s"):format(r.outcome, e.outcome or "ok")
      end
      if e.exit and r.exit ~= e.exit then
        reasons[#reasons + 1] = ("exit %s, expected %d"):format(tostring(r.exit), e.exit)
      end
      if e.stdout and not (r.stdout_full or ""):find(e.stdout) then
        reasons[#reasons + 1] = ("stdout does not match %q"):format(e.stdout)
      end
      local env = {metrics = r.metrics, params = r.params, runs = pub}
      if e.check then
        local ok, v = host.eval(e.check, env)
        if not ok then reasons[#reasons + 1] = "check failed to run: " .. tostring(v)
        elseif not v then
          reasons[#reasons + 1] = "check is false: " .. e.check:gsub("%s+", " "):gsub("^ ", "")
        end
      end
      r.met = #reasons == 0
      r.reasons = reasons
      if r.exp.outcome_of then
        r.outcome_value = r.metrics[r.exp.outcome_of]
        local interesting = false
        if e.interesting then
          local ok, v = host.eval(e.interesting, env)
          interesting = ok and v and true or false
        end
        r.label = not r.met and "forbidden" or interesting and "interesting" or "acceptable"
      end
      r.stdout_full = nil
    end
  end
end

-- Keeps the traces a batch asked for in outdir/traces, and removes the
-- others: with keep_traces, every run's whose expectation failed; with an
-- experiment's trace_per_outcome, the first of each distinct outcome (of
-- its outcome table's metric, or its outcome) of each combination. A kept
-- trace's path goes into its run's record. Returns how many were kept.
local function keep_traces(runs, outdir, keep_failed)
  local seen, kept = {}, 0
  local function safe(s) return (s:gsub("[^%w%-_.=]+", "_")) end
  for _, r in ipairs(runs) do
    if r.trace then
      local keep = keep_failed and r.met == false
      if r.exp.trace_per_outcome and r.outcome ~= "interrupted" then
        local o = r.exp.outcome_of and tostring(r.outcome_value) or r.outcome
        local k = r.exp.name .. "\0" .. r.combo .. "\0" .. o
        if not seen[k] then
          seen[k] = true
          keep = true
        end
      end
      local f = io.open(r.trace)
      if f then f:close() else keep = false end -- killed before it wrote one
      if keep then
        host.mkdir(outdir .. "/traces")
        -- A name a file system takes: a long one is cut, and the run's
        -- index keeps it apart from others cut alike.
        local name = safe(r.exp.name) .. (r.combo ~= "" and ("-" .. safe(r.combo)) or "")
        if #name > 160 then name = name:sub(1, 160) .. "-" .. r.index end
        local to = ("%s/traces/%s-%d.json"):format(outdir, name, r.rep)
        assert(os.rename(r.trace, to))
        r.trace = to
        kept = kept + 1
      else
        os.remove(r.trace)
        r.trace = nil
      end
    end
  end
  return kept
end

local function record(r)
  return {experiment = r.exp and r.exp.name or r.experiment, params = r.params,
          combo = r.combo, rep = r.rep, index = r.index, outcome = r.outcome,
          exit = r.exit, signal = r.signal, wall = r.wall, user = r.user, sys = r.sys,
          maxrss_kb = r.maxrss_kb, metrics = r.metrics, met = r.met,
          reasons = r.reasons, outcome_of = r.exp and r.exp.outcome_of or r.outcome_of,
          outcome_value = r.outcome_value, label = r.label,
          stdout_tail = r.stdout_tail, stderr_tail = r.stderr_tail, trace = r.trace,
          seed = r.seed, script = r.exp and r.exp.script or r.script,
          schedule = r.sim and r.sim.schedule or r.schedule,
          preemptions = r.sim and r.sim.preemptions or r.preemptions,
          strategy = r.exp and r.exp.sim and r.exp.sim.strategy or r.strategy}
end

--------------------------------------------------------------------------
-- Summaries

local function stats(values)
  if #values == 0 then return nil end
  table.sort(values)
  local n = #values
  local med = n % 2 == 1 and values[(n + 1) // 2] or (values[n // 2] + values[n // 2 + 1]) / 2
  return {median = med, min = values[1], max = values[n]}
end

-- Numbers as numbers: 7130, 12.3, 0.0514 (an exponent only below 1e-4).
local function fmt_num(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
  local a = math.abs(v)
  if a >= 100 or v == math.floor(v) then return ("%.0f"):format(v) end
  if a >= 1e-4 then return ("%.3g"):format(v) end
  return ("%.2e"):format(v)
end

local function summarize(records)
  local groups, order = {}, {}
  for _, r in ipairs(records) do
    local k = r.experiment .. "\0" .. (r.combo or "")
    if not groups[k] then
      groups[k] = {experiment = r.experiment, combo = r.combo or "", runs = {}}
      order[#order + 1] = k
    end
    table.insert(groups[k].runs, r)
  end
  local rows, all_met = {}, true
  for _, k in ipairs(order) do
    local g = groups[k]
    local outcomes, walls, metric_values, met, reason = {}, {}, {}, 0, nil
    local interrupted = 0
    local values, label_of, seeds_of = {}, {}, {}
    local by = g.runs[1].outcome_of or (g.runs[1].seed and "outcome")
    for _, r in ipairs(g.runs) do
      outcomes[r.outcome] = (outcomes[r.outcome] or 0) + 1
      walls[#walls + 1] = r.wall
      for mk, mv in pairs(r.metrics or {}) do
        if type(mv) == "number" then
          metric_values[mk] = metric_values[mk] or {}
          table.insert(metric_values[mk], mv)
        end
      end
      if r.outcome == "interrupted" then interrupted = interrupted + 1
      elseif r.met then met = met + 1
      else reason = reason or (r.reasons or {})[1] end
      if by and r.outcome ~= "interrupted" then
        local v = tostring(r.outcome_of and r.outcome_value or r.outcome)
        values[v] = (values[v] or 0) + 1
        local label = r.label or (r.met and "met" or "forbidden")
        label_of[v] = label == "forbidden" and "forbidden" or label_of[v] or label
        if r.seed then
          seeds_of[v] = seeds_of[v] or {}
          table.insert(seeds_of[v], r.seed)
        end
      end
    end
    local oc = {}
    for _, o in ipairs(sorted_keys(outcomes)) do oc[#oc + 1] = o .. ":" .. outcomes[o] end
    local metrics = {}
    for _, mk in ipairs(sorted_keys(metric_values)) do metrics[mk] = stats(metric_values[mk]) end
    local table_rows
    if by then
      table_rows = {}
      local vs = sorted_keys(values)
      table.sort(vs, function(a, b)
        local x, y = tonumber(a), tonumber(b)
        if x and y then return x < y end
        return a < b
      end)
      for _, v in ipairs(vs) do
        table_rows[#table_rows + 1] = {value = v, count = values[v],
          percent = 100 * values[v] / #g.runs, label = label_of[v], seeds = seeds_of[v]}
      end
    end
    all_met = all_met and met == #g.runs - interrupted
    rows[#rows + 1] = {experiment = g.experiment, params = g.combo, n = #g.runs,
                       shown = combo_label(g.runs[1].params or {}),
                       outcomes = table.concat(oc, " "), wall = stats(walls),
                       metrics = metrics, met = met, reason = reason,
                       interrupted = interrupted,
                       outcome_of = by, outcome_table = table_rows}
  end
  return rows, all_met
end

local function metric_text(m)
  local parts = {}
  for _, k in ipairs(sorted_keys(m)) do
    local s = m[k]
    parts[#parts + 1] = s.min == s.max and ("%s=%s"):format(k, fmt_num(s.median))
      or ("%s=%s [%s..%s]"):format(k, fmt_num(s.median), fmt_num(s.min), fmt_num(s.max))
  end
  return table.concat(parts, " ")
end

-- Interrupted runs are neither met nor failed: "met 3/3, 2 interrupted".
local function expect_text(r)
  local judged = r.n - r.interrupted
  if judged == 0 then return ("%d interrupted"):format(r.interrupted) end
  local apart = r.interrupted > 0 and (", %d interrupted"):format(r.interrupted) or ""
  if r.met == judged then return ("met %d/%d%s"):format(r.met, judged, apart) end
  return ("FAILED %d/%d: %s%s"):format(judged - r.met, judged, r.reason or "?", apart)
end

local COLUMNS = {"experiment", "params", "n", "outcomes", "wall s (median [min..max])",
                 "metrics (median [min..max])", "expectation"}

local function cells(r)
  local w = r.wall
  return {r.experiment, r.shown, tostring(r.n), r.outcomes,
          ("%.3f [%.3f..%.3f]"):format(w.median, w.min, w.max), metric_text(r.metrics),
          expect_text(r)}
end

-- Without its trailing blanks, in one pass (a pattern such as "%s+$" is
-- quadratic in a run of blanks that is not at the end: a wide column's).
local function rtrim(s)
  local i = #s
  while i > 0 and s:byte(i) == 32 do i = i - 1 end
  return s:sub(1, i)
end

local function print_table(rows)
  local widths = {}
  local all = {COLUMNS}
  for _, r in ipairs(rows) do all[#all + 1] = cells(r) end
  for _, c in ipairs(all) do
    for i, v in ipairs(c) do widths[i] = math.max(widths[i] or 0, #v) end
  end
  for li, c in ipairs(all) do
    local parts = {}
    for i, v in ipairs(c) do parts[i] = v .. (" "):rep(widths[i] - #v) end
    print(rtrim(table.concat(parts, "  ")))
    if li == 1 then
      local dash = {}
      for i = 1, #widths do dash[i] = ("-"):rep(widths[i]) end
      print(table.concat(dash, "  "))
    end
  end
end

-- Seeds as ranges, the first few: "1-3 7 9-12 ... (40 in all)".
local function seed_list(seeds)
  table.sort(seeds)
  local parts, i = {}, 1
  while i <= #seeds and #parts < 8 do
    local j = i
    while j < #seeds and seeds[j + 1] == seeds[j] + 1 do j = j + 1 end
    parts[#parts + 1] = j > i and ("%d-%d"):format(seeds[i], seeds[j]) or tostring(seeds[i])
    i = j + 1
  end
  if i <= #seeds then parts[#parts + 1] = ("... (%d in all)"):format(#seeds) end
  return table.concat(parts, " ")
end

local function print_outcome_tables(rows, md)
  for _, r in ipairs(rows) do
    local sim = r.outcome_table and r.outcome_table[1] and r.outcome_table[1].seeds
    if r.outcome_table then
      print()
      local title = ("%s %s: outcomes of %s"):format(r.experiment, r.shown, r.outcome_of)
      if md then
        print("**" .. title .. "**")
        print()
        print("| " .. r.outcome_of .. " | count | % | label |" .. (sim and " seeds |" or ""))
        print("|---:|---:|---:|---|" .. (sim and "---|" or ""))
      else
        print(title)
        print(("  %12s  %6s  %7s  %-10s%s"):format(r.outcome_of, "count", "%", "label",
          sim and "  seeds" or ""))
      end
      for _, t in ipairs(r.outcome_table) do
        local seeds = t.seeds and seed_list(t.seeds) or ""
        if md then
          print(("| %s | %d | %.1f | %s |%s"):format(t.value, t.count, t.percent, t.label,
            sim and (" " .. seeds .. " |") or ""))
        else
          print(("  %12s  %6d  %6.1f%%  %-10s%s"):format(t.value, t.count, t.percent, t.label,
            sim and ("  " .. seeds) or ""))
        end
      end
    end
  end
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function print_summary(rows, format)
  if format == "json" then
    print(host.json_encode(rows))
  elseif format == "csv" then
    print("experiment,params,n,outcomes,wall_median,wall_min,wall_max,metrics,met,interrupted,"
          .. "failed_reason")
    for _, r in ipairs(rows) do
      print(table.concat({csv_field(r.experiment), csv_field(r.params), r.n,
        csv_field(r.outcomes), r.wall.median, r.wall.min, r.wall.max,
        csv_field(metric_text(r.metrics)), r.met, r.interrupted, csv_field(r.reason or "")}, ","))
    end
  elseif format == "md" then
    print("| " .. table.concat(COLUMNS, " | ") .. " |")
    print("|" .. ("---|"):rep(#COLUMNS))
    for _, r in ipairs(rows) do
      local c = cells(r)
      for i, v in ipairs(c) do c[i] = v:gsub("|", "\\|") end
      print("| " .. table.concat(c, " | ") .. " |")
    end
    print_outcome_tables(rows, true)
  else
    print_table(rows)
    print_outcome_tables(rows, false)
  end
end

--------------------------------------------------------------------------
-- Commands

local FORMATS = {table = true, md = true, csv = true, json = true}

local function parse_options(args, allowed)
  local o = {positional = {}}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name = a:match("^%-%-([%w-]+)$")
    if name then
      if not allowed[name] then refuse("unknown option '%s'\n%s", a, USAGE) end
      if allowed[name] == "flag" then
        o[name] = true
        i = i + 1
      else
        if args[i + 1] == nil then refuse("%s needs a value\n%s", a, USAGE) end
        o[name] = args[i + 1]
        i = i + 2
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      refuse("unknown option '%s'\n%s", a, USAGE)
    else
      o.positional[#o.positional + 1] = a
      i = i + 1
    end
  end
  o.format = o.format or "table"
  if not FORMATS[o.format] then refuse("--format takes table, md, csv or json (got '%s')", o.format) end
  return o
end

-- The command that replays a run of a sim experiment (or of explore).
local function shell_quote(s)
  s = tostring(s)
  if s:match("^[%w%-_./=:,]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function replay_command(rec, schedule)
  local parts = {"concur run --sim --seed", tostring(rec.seed)}
  if rec.strategy and rec.strategy ~= "random" then
    parts[#parts + 1] = "--strategy " .. rec.strategy
  end
  parts[#parts + 1] = "--replay " .. shell_quote(schedule or rec.schedule or "")
  parts[#parts + 1] = shell_quote(rec.script or "SCRIPT")
  for _, k in ipairs(sorted_keys(rec.params or {})) do
    parts[#parts + 1] = "-p " .. shell_quote(k .. "=" .. tostring(rec.params[k]))
  end
  return table.concat(parts, " ")
end

-- For each combination of a sim experiment whose expectation failed: its
-- first failed seed, and how to run it again.
local function say_replays(records)
  local said = {}
  for _, r in ipairs(records) do
    local k = r.experiment .. "\0" .. (r.combo or "")
    if r.seed and r.met == false and not said[k] then
      said[k] = true
      io.stderr:write(("concur: %s%s: seed %d failed (%s); replay it: %s\n"):format(
        r.experiment, r.combo ~= "" and (" " .. r.combo) or "", r.seed,
        (r.reasons or {})[1] or r.outcome, replay_command(r)))
    end
  end
end

local function cmd_batch(args)
  local o = parse_options(args, {jobs = true, out = true, format = true, filter = true, shard = true,
                                 exclude = true, ["repeat"] = true, ["keep-traces"] = "flag"})
  if #o.positional ~= 1 then refuse("batch takes one experiments file\n%s", USAGE) end
  local file = o.positional[1]
  local jobs = host.cpu_count()
  if o.jobs then
    jobs = math.tointeger(tonumber(o.jobs))
    if not jobs or jobs < 1 then refuse("--jobs takes a whole number of at least 1 (got '%s')", o.jobs) end
  end
  local si, sn = 1, 1
  if o.shard then
    si, sn = o.shard:match("^(%d+)/(%d+)$")
    si, sn = tonumber(si), tonumber(sn)
    if not si or sn < 1 or si < 1 or si > sn then
      refuse("--shard takes I/N with 1 <= I <= N, for example 2/4 (got '%s')", o.shard)
    end
  end
  local ok, doc = pcall(yaml.load, file)
  if not ok then refuse("%s", tostring(doc):gsub("^concur: ", "")) end
  local exps = validate(doc, file)
  local interleaved = doc.order == "interleaved"
  if o.filter then
    local kept = {}
    for _, e in ipairs(exps) do if host.fnmatch(o.filter, e.name) then kept[#kept + 1] = e end end
    if #kept == 0 then refuse("--filter '%s' matches no experiment of %s", o.filter, file) end
    exps = kept
  end
  if o.exclude then
    local kept = {}
    for _, e in ipairs(exps) do if not host.fnmatch(o.exclude, e.name) then kept[#kept + 1] = e end end
    if #kept == #exps then refuse("--exclude '%s' matches no experiment of %s", o.exclude, file) end
    if #kept == 0 then refuse("--exclude '%s' leaves no experiment of %s", o.exclude, file) end
    exps = kept
  end
  if o["repeat"] then
    local n = math.tointeger(tonumber(o["repeat"]))
    if not n or n < 1 then refuse("--repeat takes a whole number of at least 1 (got '%s')", o["repeat"]) end
    for _, e in ipairs(exps) do e.rep = n end
  end
  local runs = expand(exps, interleaved)
  local mine = {}
  for _, r in ipairs(runs) do
    if (r.index - 1) % sn == si - 1 then mine[#mine + 1] = r end
  end
  -- The runs' loop takes a Ctrl-C itself (it kills its runs, then records
  -- them); the writing of runs.jsonl is not cut either. Every other phase
  -- stops where it is.
  host.interruptible(false)
  local outdir = o.out
  if outdir then host.mkdir(outdir) else outdir = host.mkdir_new("results/" .. host.timestamp()) end
  local tmpdir = outdir .. "/tmp"
  host.mkdir(tmpdir)
  local finished = execute(mine, jobs, tmpdir, o["keep-traces"])
  local done = {}
  for _, r in ipairs(mine) do if r.outcome then done[#done + 1] = r end end
  host.interruptible(true)
  local judged, err = pcall(judge, done)
  host.interruptible(false)
  if not judged and err ~= "interrupted" then error(err, 0) end
  local traces = keep_traces(done, outdir, o["keep-traces"] and judged)
  for _, r in ipairs(mine) do
    if r.trace and not r.outcome then os.remove(r.trace) end -- never started
  end
  os.remove(tmpdir)
  local path = outdir .. "/runs.jsonl"
  local f = assert(io.open(path, "w"))
  local records = {}
  for _, r in ipairs(done) do
    local rec = record(r)
    records[#records + 1] = rec
    f:write(host.json_encode(rec), "\n")
  end
  f:close()
  local said = ("concur: %d runs%s written to %s\n"):format(#records,
    sn > 1 and (" (shard %d/%d)"):format(si, sn) or "", path)
  local all_met = false
  if judged then
    host.interruptible(true)
    local rows
    rows, all_met = summarize(records)
    print_summary(rows, o.format)
    say_replays(records)
  end
  io.stderr:write(said)
  if traces > 0 then
    io.stderr:write(("concur: %d trace%s kept in %s/traces (concur timeline FILE, or open "
      .. "one in https://ui.perfetto.dev)\n"):format(traces, traces == 1 and "" or "s", outdir))
  end
  if not finished or not judged then
    local left = #mine - #done
    io.stderr:write(("concur: interrupted%s; the runs that ended are recorded%s\n"):format(
      judged and "" or " while judging", judged and (left > 0 and (", %d not started"):format(left)
      or "") or " (not all judged)"))
    return EXIT_INTERRUPTED
  end
  return all_met and EXIT_OK or EXIT_FAILED
end

local EXPLORE_USAGE = [[
usage: concur explore SCRIPT [-p KEY=VALUE]... [--runs N] [--strategy random|pct] [--depth D]
                      [--check EXPR] [--seed S] [--jobs N] [--quantum K] [--timeout S]
                      [--no-shrink]
]]

-- concur explore: runs the script under --sim, seed after seed, until a run
-- fails (an error, a deadlock, a timeout, or --check false) or --runs pass;
-- prints the outcomes over the schedules tried and, for the first failure,
-- its schedule shrunk to the fewest preemptions that still fail.
-- The most runs explore spends on the schedules of one preemption.
local SHRINK_BUDGET = 2000

local function cmd_explore(args)
  local o = {params = {}, positional = {}}
  local valued = {runs = true, strategy = true, depth = true, check = true, seed = true,
                  jobs = true, quantum = true, timeout = true}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name = a:match("^%-%-([%w-]+)$")
    if a == "-p" or a:match("^%-p.+=") then
      local kv = a == "-p" and args[i + 1] or a:sub(3)
      local k, v = (kv or ""):match("^([^=]+)=(.*)$")
      if not k then refuse("-p takes KEY=VALUE\n%s", EXPLORE_USAGE) end
      o.params[k] = v == "true" or (v ~= "false" and (math.tointeger(tonumber(v)) or tonumber(v) or v))
      if v == "false" then o.params[k] = false end
      i = i + (a == "-p" and 2 or 1)
    elseif name == "no-shrink" then
      o.no_shrink = true
      i = i + 1
    elseif name and valued[name] then
      if args[i + 1] == nil then refuse("--%s needs a value\n%s", name, EXPLORE_USAGE) end
      o[name] = args[i + 1]
      i = i + 2
    elseif a:sub(1, 1) == "-" and #a > 1 then
      refuse("unknown option '%s'\n%s", a, EXPLORE_USAGE)
    else
      o.positional[#o.positional + 1] = a
      i = i + 1
    end
  end
  if #o.positional ~= 1 then refuse("explore takes one script\n%s", EXPLORE_USAGE) end
  local script = o.positional[1]
  local f = io.open(script)
  if not f then refuse("cannot read the script '%s'", script) end
  f:close()
  local function whole(name, min, default)
    if o[name] == nil then return default end
    local n = math.tointeger(tonumber(o[name]))
    if not n or n < min then
      refuse("--%s takes a whole number of at least %d (got '%s')", name, min, o[name])
    end
    return n
  end
  local runs_max, first = whole("runs", 1, 1000), whole("seed", 0, 1)
  local jobs = whole("jobs", 1, host.cpu_count())
  local strategy = o.strategy or "random"
  if strategy ~= "random" and strategy ~= "pct" then
    refuse("--strategy takes random or pct (got '%s')", strategy)
  end
  if o.check then
    local ok, err = compiles(o.check)
    if not ok then refuse("--check does not compile: %s; write a Lua expression over metrics and params", err) end
  end
  local timeout = tonumber(o.timeout) or 60
  local exp = {name = script, script = script, params = o.params, timeout = timeout,
               time_scale = 1, env = {}, expect = {},
               sim = {strategy = strategy, depth = whole("depth", 1, nil),
                      quantum = whole("quantum", 1, nil)}}
  host.interruptible(false)
  local tmpdir = host.mkdir_new((os.getenv("TMPDIR") or "/tmp") .. "/concur-explore")
  local n = 0
  local function one(seed, replay)
    n = n + 1
    return {exp = exp, params = o.params, combo = "", shown = "", rep = seed, seed = seed,
            replay = replay, index = n}
  end
  -- What went wrong in a run, or nil.
  local function failure(r)
    if r.outcome ~= "ok" then return r.outcome end
    if o.check then
      local ok, v = host.eval(o.check, {metrics = r.metrics, params = o.params})
      if not ok then return "check failed to run: " .. tostring(v) end
      if not v then return "check false" end
    end
  end
  local counts, seeds_of, failed = {}, {}, nil
  local t0, done, tty = host.now(), 0, host.isatty(2)
  -- PCT's change points fall among the run's decisions: how many there
  -- are is learned from one run in the default order.
  if strategy == "pct" then
    local plain = one(first, "")
    execute({plain}, 1, tmpdir, false, true)
    exp.sim.steps = math.max(1, plain.sim and math.tointeger(plain.sim.decisions) or 0)
  end
  local seed = first
  local interrupted = false
  while done < runs_max and not failed do
    local batch = {}
    for _ = 1, math.min(jobs * 8, runs_max - done) do
      batch[#batch + 1] = one(seed)
      seed = seed + 1
    end
    if not execute(batch, jobs, tmpdir, false, true) then interrupted = true; break end
    for _, r in ipairs(batch) do
      local why = failure(r)
      local key = why and (why == "check false" and "check false" or why) or "ok"
      counts[key] = (counts[key] or 0) + 1
      seeds_of[key] = seeds_of[key] or {}
      table.insert(seeds_of[key], r.seed)
      done = done + 1
      if why and not failed then failed = {run = r, why = why} end
    end
    if tty then
      io.stderr:write(("\rexplore: %d runs, %s, %.0f runs/s "):format(done,
        failed and "a failure found" or "no failure yet", done / (host.now() - t0)))
    end
  end
  if tty then io.stderr:write("\n") end
  local wall = host.now() - t0
  print(("explore %s%s: %d runs (%s), %.2f s, %.0f runs/s"):format(script,
    next(o.params) and (" " .. combo_label(o.params)) or "", done, strategy, wall, done / wall))
  print(("  %14s  %6s  %7s  %s"):format("outcome", "runs", "%", "seeds"))
  for _, k in ipairs(sorted_keys(counts)) do
    print(("  %14s  %6d  %6.1f%%  %s"):format(k, counts[k], 100 * counts[k] / done,
      seed_list(seeds_of[k])))
  end
  if interrupted then
    os.remove(tmpdir)
    io.stderr:write("concur: interrupted\n")
    return EXIT_INTERRUPTED
  end
  if not failed then
    os.remove(tmpdir)
    print(("no failure in %d schedules"):format(done))
    return EXIT_OK
  end
  local r = failed.run
  local rec = {seed = r.seed, strategy = strategy, script = script, params = o.params}
  local schedule = r.sim and r.sim.schedule or ""
  local preemptions = r.sim and r.sim.preemptions or 0
  local picks = {}
  for p in schedule:gmatch("[^,]+") do picks[#picks + 1] = p end
  local tried = 0
  -- Does the schedule still fail the same way? Its run, if so.
  local function still(list)
    tried = tried + 1
    local x = one(r.seed, table.concat(list, ","))
    execute({x}, 1, tmpdir, false, true)
    if failure(x) == failed.why then return x end
  end
  if not o.no_shrink and not (r.sim and r.sim.overflow) then
    local best = still({})
    if best then
      picks = {}
    else
      local chunk = math.max(1, #picks // 2)
      while true do
        local at = #picks - chunk + 1
        while at >= 1 do
          local try = {}
          for k, p in ipairs(picks) do if k < at or k >= at + chunk then try[#try + 1] = p end end
          local x = still(try)
          if x then picks, best = try, x end
          at = at - chunk
        end
        if chunk == 1 then break end
        chunk = math.max(1, chunk // 2)
      end
    end
    if best and best.sim then
      schedule, preemptions = best.sim.schedule, best.sim.preemptions
    else
      schedule = table.concat(picks, ",")
    end
    -- Dropping picks leaves some that only mattered together with the
    -- context of others: when more than one preemption is left, every
    -- schedule of one pick (CHESS's bound of 1) is tried, within a budget.
    if preemptions > 1 then
      local plain = one(r.seed, "")
      execute({plain}, 1, tmpdir, false, true)
      tried = tried + 1
      local decisions = plain.sim and plain.sim.decisions or 0
      local tasks = plain.sim and plain.sim.tasks or 0
      local cands = {}
      for d = 0, decisions - 1 do
        for t = 0, tasks - 1 do cands[#cands + 1] = d .. ":" .. t end
      end
      local budget, at = SHRINK_BUDGET, 1
      while at <= #cands and budget > 0 do
        local batch = {}
        while at <= #cands and #batch < jobs * 4 and budget > 0 do
          batch[#batch + 1] = one(r.seed, cands[at])
          at, budget = at + 1, budget - 1
        end
        execute(batch, jobs, tmpdir, false, true)
        tried = tried + #batch
        local found
        for _, x in ipairs(batch) do
          if not found and failure(x) == failed.why and x.sim and x.sim.preemptions < preemptions then
            found = x
          end
        end
        if found then
          schedule, preemptions = found.sim.schedule, found.sim.preemptions
          break
        end
      end
    end
  end
  os.remove(tmpdir)
  print(("first failure: seed %d (%s), after %d runs"):format(r.seed, failed.why, done))
  print(("  schedule: %s (%d preemption%s%s)"):format(schedule == "" and "(none: the default order)"
    or schedule, preemptions, preemptions == 1 and "" or "s",
    o.no_shrink and "" or (", shrunk in %d runs"):format(tried)))
  print("  replay:   " .. replay_command(rec, schedule))
  print("  see it:   add --timeline (or --trace FILE) to the replay")
  return EXIT_FAILED
end

local function cmd_report(args)
  local o = parse_options(args, {format = true})
  if #o.positional == 0 then refuse("report takes one or more result folders or runs.jsonl files\n%s", USAGE) end
  local records, seen = {}, {}
  for _, p in ipairs(o.positional) do
    local path = p:match("%.jsonl$") and p or (p .. "/runs.jsonl")
    local f = io.open(path)
    if not f then refuse("cannot read %s: no such results file", path) end
    local n = 0
    for line in f:lines() do
      n = n + 1
      local r, err = host.json_decode(line)
      if type(r) ~= "table" or not r.experiment then
        refuse("%s:%d: not a run record (%s)", path, n, err or "no experiment")
      end
      local id = ("%s\0%s\0%s"):format(r.experiment, r.combo or "", r.rep or n)
      if seen[id] then
        io.stderr:write(("concur: %s:%d: run %s %s #%s was already read; counted once\n"):format(
          path, n, r.experiment, r.combo or "", tostring(r.rep)))
      else
        seen[id] = true
        r.metrics = r.metrics or {}
        records[#records + 1] = r
      end
    end
    f:close()
  end
  table.sort(records, function(a, b) return (a.index or 0) < (b.index or 0) end)
  local rows, all_met = summarize(records)
  print_summary(rows, o.format)
  return all_met and EXIT_OK or EXIT_FAILED
end

host.interruptible(true)
local commands = {report = cmd_report, explore = cmd_explore, batch = cmd_batch}
local ok, code = pcall(commands[command] or cmd_batch, argv)
host.interruptible(false)
if not ok and code == "interrupted" then
  io.stdout:flush()
  io.stderr:write("concur: interrupted\n")
  return EXIT_INTERRUPTED
end
if not ok then
  if type(code) == "table" and code.refusal then
    io.stderr:write("concur: ", code.refusal, "\n")
    return EXIT_USAGE
  end
  error(code, 0)
end
return code
