-- test_process: Process methods and the endings of a run.
local concur = require "concur"
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local script = T.script

-- Processes still alive that name the marker in their command line.
local function survivors(marker)
  -- The bracket keeps pgrep's own shell, whose command line holds the
  -- pattern, from matching it.
  local pattern = "[" .. marker:sub(1, 1) .. "]" .. marker:sub(2)
  local _, out = T.sh("pgrep -f '" .. pattern .. "' | wc -l")
  return tonumber(out)
end

T.test("start, join, exitcode, names, status", function()
  local p = concur.Process{target = function(a, b) os.exit(a + b) end, args = {2, 3}}
  T.eq(p.exitcode, nil)
  T.eq(p:status(), "new")
  p:start()
  T.eq(p:join(10), true)
  T.eq(p.exitcode, 5)
  T.eq(p:status(), "dead")
  T.eq(p:is_alive(), false)
  local e = concur.Process{target = function() error("boom") end}
  e:start(); e:join()
  T.eq(e.exitcode, 1)
  local s = concur.Process{target = function() concur.sleep(30) end, name = "sleeper"}
  T.eq(s.name, "sleeper")
  s:start()
  T.eq(s:join(0.05), false, "join with a timeout returns while it runs")
  T.eq(s:is_alive(), true)
  s:terminate()
  s:join()
  T.eq(s.exitcode, -15)
  T.raises("ProcessError", s.start, s)
  T.raises("ProcessError", concur.Process{}.join, concur.Process{})
end)

T.test("only a child can be terminated or killed", function()
  local me = concur.current_process()
  local err = T.raises("ProcessError", me.kill, me)
  assert(err.message:find("not the current one"), err.message)
  T.raises("ProcessError", me.terminate, me)
  local q = concur.Queue()
  local p = concur.Process{target = function()
    local parent = concur.parent_process()
    local ok, e = pcall(parent.kill, parent)
    q:put({ok, e.message})
  end}
  p:start(); p:join()
  local r = q:get(true, 10)
  T.eq(r[1], false)
  assert(r[2]:find("this one's parent"), r[2])
end)

T.test("subclasses, current and parent process, random streams", function()
  local P = concur.Process:extend()
  function P:run() os.exit(self.n + (concur.parent_process().pid == self.ppid and 1 or 0)) end
  local p = P{n = 4, ppid = concur.getpid()}
  p:start(); p:join()
  T.eq(p.exitcode, 5)
  T.eq(concur.current_process().name, "MainProcess")
  T.eq(concur.parent_process(), nil)
  local a = concur.Process{target = function() concur.report{} os.exit(math.random(0, 200)) end}
  local b = concur.Process{target = function() os.exit(math.random(0, 200)) end}
  local c = concur.Process{target = function() os.exit(math.random(0, 200)) end}
  a:start(); b:start(); c:start(); a:join(); b:join(); c:join()
  assert(not (a.exitcode == b.exitcode and b.exitcode == c.exitcode),
         "children draw different random numbers")
  local n = concur.Process{target = function()
    local g = concur.Process{target = function()
      os.exit(concur.current_process().name == concur.parent_process().name .. ":1"
              and 0 or 1)
    end}
    g:start(); g:join()
    os.exit(g.exitcode)
  end}
  assert(n.name:match("^Process%-%d+$"), n.name)
  n:start(); n:join()
  T.eq(n.exitcode, 0, "nested names")
end)

T.test("getpid is each process's own, in children and grandchildren", function()
  local me = concur.getpid()
  T.eq(me, tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+")))
  local q = concur.Queue()
  local p = concur.Process{target = function()
    local g = concur.Process{target = function() q:put(concur.getpid()) end}
    q:put(concur.getpid())
    g:start(); g:join()
    q:put(g.pid)
  end}
  p:start()
  local child, grandchild, seen = q:get(true, 5), q:get(true, 5), q:get(true, 5)
  p:join()
  T.eq(child, p.pid)
  T.eq(grandchild, seen)
  assert(child ~= me and grandchild ~= me and grandchild ~= child)
  T.eq(concur.getpid(), me)
end)

T.test("daemons may not have children", function()
  local d = concur.Process{daemon = true, target = function()
    local ok, err = pcall(function() concur.Process{target = print}:start() end)
    os.exit((not ok and concur.is(err, "ProcessError")) and 0 or 1)
  end}
  d:start(); d:join()
  T.eq(d.exitcode, 0)
end)

T.test("a normal end joins children; nothing is left", function()
  local path = script([[
    local concur = require "concur"
    concur.Process{target = function() concur.sleep(0.3) print("child done") end}:start()
    concur.Process{target = function()
      -- an orphan: its parent exits at once, it would run for a minute
      concur.Process{target = function() concur.sleep(60) end}:start()
      os.exit(0)
    end}:start()
    print("main done")]])
  local code, out = T.sh(bin .. " run " .. path)
  T.eq(code, 0)
  T.eq(out, "main done\nchild done\n")
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.test("a script error still joins, exits 1, leaves nothing", function()
  local path = script([[
    local concur = require "concur"
    concur.Process{target = function() concur.sleep(0.2) end}:start()
    concur.Process{daemon = true, target = function() concur.sleep(60) end}:start()
    error("scripted failure")]])
  local code, _, err = T.sh(bin .. " run " .. path)
  T.eq(code, 1)
  assert(err:find("concur: .*scripted failure"), err)
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.test("the run timeout kills everything and exits 4", function()
  local path = script([[
    local concur = require "concur"
    for i = 1, 3 do concur.Process{target = function() while true do end end}:start() end
    while true do end]])
  local t0 = concur.time()
  local code, _, err = T.sh(bin .. " run " .. path .. " --timeout 0.5")
  T.eq(code, 4)
  assert(concur.time() - t0 < 5)
  assert(err:find("timed out"), err)
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.test("kill -9 of the supervisor ends every process of the run within 1 s", function()
  -- Children that sleep, grandchildren that spin in Lua, an orphan, a
  -- daemon thread: 8 processes of the run besides the supervisor (and the
  -- shell, whose command line names the script too).
  local path = script([[
    local concur = require "concur"
    for i = 1, 3 do
      concur.Process{target = function()
        concur.Process{target = function() while true do end end}:start()
        concur.sleep(60)
      end}:start()
    end
    concur.Process{target = function()
      concur.Process{target = function() concur.sleep(60) end}:start()
      os.exit(0)
    end}:start()
    concur.Thread{target = function() concur.sleep(60) end, daemon = true}:start()
    print("ready") io.stdout:flush()
    concur.sleep(60)]])
  local code, out = T.sh("sh -c '" .. bin .. " run " .. path .. " & pid=$!; " ..
    "i=0; while [ $(pgrep -f \"[" .. path:sub(1, 1) .. "]" .. path:sub(2) .. "\" | wc -l) -lt 10 ]; " ..
    "do sleep 0.05; i=$((i+1)); [ $i -gt 200 ] && exit 9; done; kill -9 $pid; sleep 1'")
  T.eq(code, 0, "the run's 8 processes are up within 10 s")
  T.eq(out, "ready\n")
  T.eq(survivors(path), 0)
  os.remove(path)
end)

-- Runs the script in a process group of its own, as a terminal would, and
-- sends the group SIGINT `times` times, `gap` seconds apart, once it
-- printed "ready". The run's exit code, stdout and stderr (the shell's
-- handler for INT keeps it waiting for the run, whose handlers are its own).
local function ctrl_c(path, times, gap)
  return T.sh("setsid sh -c 'trap : INT; " .. bin .. " run " .. path .. " > /tmp/ctrlc.$$ & pid=$!; " ..
    "i=0; until grep -q ready /tmp/ctrlc.$$; do sleep 0.02; i=$((i+1)); [ $i -gt 500 ] && break; done; " ..
    "n=0; while [ $n -lt " .. times .. " ]; do kill -INT -$$; sleep " .. gap .. "; n=$((n+1)); done; " ..
    "wait $pid; rc=$?; while [ $rc -gt 128 ] && kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done; " ..
    "cat /tmp/ctrlc.$$; rm -f /tmp/ctrlc.$$; exit $rc'")
end

T.test("Ctrl-C interrupts a blocked run, exits 130, leaves nothing", function()
  local path = script([[
    local concur = require "concur"
    local e = concur.Event()
    for i = 1, 3 do concur.Process{target = function() e:wait() end}:start() end
    print("ready") io.stdout:flush()
    e:wait()]])
  local code, _, err = ctrl_c(path, 1, 0)
  T.eq(code, 130)
  assert(err:find("interrupted"), err)
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.test("Ctrl-C is KeyboardInterrupt: the main thread's, once, caught by pcall", function()
  -- The main thread's sleep raises Interrupted into its pcall, and cleanup
  -- runs; a thread's sleep goes on; the run still exits 130.
  local path = script([[
    local concur = require "concur"
    local t = concur.Thread{target = function() concur.sleep(0.5) print("thread slept") end}
    t:start()
    print("ready") io.stdout:flush()
    local ok, e = pcall(concur.sleep, 10)
    print(ok, e.kind)
    concur.sleep(0.1)
    t:join()
    print("cleanup ran")]])
  local code, out, err = ctrl_c(path, 1, 0)
  T.eq(code, 130, err)
  T.eq(out, "ready\nfalse\tInterrupted\nthread slept\ncleanup ran\n")
  assert(err:find("concur: interrupted"), err)
  -- Caught, then os.exit: the script's own code.
  local path2 = script([[
    local concur = require "concur"
    print("ready") io.stdout:flush()
    local ok = pcall(concur.sleep, 10)
    os.exit(ok and 1 or 7)]])
  code = ctrl_c(path2, 1, 0)
  T.eq(code, 7)
  os.remove(path); os.remove(path2)
end)

T.test("a second Ctrl-C ends the run at once", function()
  local path = script([[
    local concur = require "concur"
    concur.Process{target = function() pcall(concur.sleep, 30) concur.sleep(30) end}:start()
    print("ready") io.stdout:flush()
    pcall(concur.sleep, 30)
    concur.sleep(30) -- cleanup that takes too long]])
  local t0 = concur.time()
  local code, _, err = ctrl_c(path, 2, 0.3)
  T.eq(code, 130, err)
  assert(concur.time() - t0 < 10, "it ended at the second Ctrl-C")
  assert(err:find("interrupted again"), err)
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.test("start() reaps children that ended unjoined before it counts them", function()
  -- limits.max_processes is 8: 40 children that end at once, never joined,
  -- each started after the last has ended; then the handles report them.
  local cfg = T.file("limits:\n  max_processes: 8\n")
  local path = T.script([[
local concur = require "concur"
local ps = {}
for i = 1, 40 do
  local p = concur.Process{target = function() os.exit(i % 7) end}
  p:start()
  ps[i] = p
  concur.sleep(0.05) -- ended by then (is_alive() would reap it)
end
local bad = 0
for i, p in ipairs(ps) do
  p:join(5)
  if p.exitcode ~= i % 7 then bad = bad + 1 end
end
print(#ps, bad)
]])
  local code, out, err = T.sh(bin .. " run " .. path .. " --config " .. cfg)
  T.eq(code, 0, err)
  T.eq(out, "40\t0\n")
  os.remove(path); os.remove(cfg)
  -- Its whole range is usable: the table of the largest fits the arena.
  cfg = T.file("limits:\n  max_processes: 8192\n")
  code, out, err = T.sh(bin .. " run tests/lua/harness.lua --config " .. cfg)
  T.eq(code, 0, err)
  os.remove(cfg)
  cfg = T.file("limits:\n  max_processes: 8193\n")
  code, out, err = T.sh(bin .. " run tests/lua/harness.lua --config " .. cfg)
  T.eq(code, 2, err)
  os.remove(cfg)
end)

T.test("an unknown option is refused with the nearest known name", function()
  local function refused(f, want)
    local ok, e = pcall(f)
    T.eq(ok, false)
    assert(tostring(e):find(want, 1, true), tostring(e))
    -- Where the user wrote it, not inside concur.
    assert(tostring(e):find("test_process.lua:%d+:"), tostring(e))
  end
  refused(function() local p = concur.Process{arg = {1}}; return p end,
          "bad argument #1 to 'Process' (unknown option 'arg' (did you mean 'args'?))")
  refused(function() local p = concur.Process{target = print, deamon = true}; return p end,
          "unknown option 'deamon' (did you mean 'daemon'?)")
  refused(function() local t = concur.Thread{targte = print}; return t end,
          "bad argument #1 to 'Thread' (unknown option 'targte' (did you mean 'target'?))")
  refused(function() local p = concur.Pool{process = 2}; return p end,
          "bad argument #1 to 'Pool' (unknown option 'process' (did you mean 'processes'?))")
  refused(function() local p = concur.Pool{frobnicate = 1}; return p end,
          "unknown option 'frobnicate'; the options are processes, initializer, initargs, " ..
          "maxtasksperchild")
  refused(function() local m = concur.Manager{x = 1}; return m end,
          "bad argument #1 to 'Manager' (unknown option 'x': it takes none)")
  local pool <close> = concur.Pool(1)
  refused(function() local r = pool:apply_async(print, {}, {callbak = print}); return r end,
          "bad argument #3 to 'apply_async' (unknown option 'callbak' (did you mean 'callback'?))")
  refused(function() local r = pool:map_async(print, {1}, nil, {error_callbak = print}); return r end,
          "bad argument #4 to 'map_async' (unknown option 'error_callbak' (did you mean " ..
          "'error_callback'?))")
  -- A subclass's instances take what its run() reads.
  local P = concur.Process:extend()
  function P:run() os.exit(self.n) end
  local p = P{n = 3}
  p:start(); p:join()
  T.eq(p.exitcode, 3)
  local TT = concur.Thread:extend()
  T.eq(TT{n = 4}.n, 4)
end)

T.test("a child's traceback is its own, not its parent's frames below start", function()
  local path = script([[
    local concur = require "concur"
    local function work() error("boom") end
    local P = concur.Process:extend()
    function P:run() concur.Queue():get(true, 0.01) end
    local function parent_side()
      local a = concur.Process{target = function() work() end}
      a:start(); a:join()
      local b = P{}
      b:start(); b:join()
    end
    parent_side()]])
  local code, _, err = T.sh(bin .. " run " .. path)
  T.eq(code, 0)
  assert(err:find("boom") and err:find("in upvalue 'work'"), err)
  assert(err:find("concur.Empty: queue is empty"), err)
  assert(not err:find("parent_side"), "the parent's frames are not the child's: " .. err)
  assert(not err:find("in method 'start'"), err)
  os.remove(path)
end)

T.test("bad input is refused before anything runs", function()
  local code, _, err = T.sh(bin .. " run /nonexistent.lua")
  T.eq(code, 2); assert(err:find("cannot read the script"), err)
  code, _, err = T.sh(bin .. " run /tmp")
  T.eq(code, 2); assert(err:find("cannot read the script '/tmp': it is a directory"), err)
  local path = script("local x = = 1")
  code, _, err = T.sh(bin .. " run " .. path)
  T.eq(code, 1); assert(err:find(":1:"), err)
  os.remove(path)
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --bogus")
  T.eq(code, 2); assert(err:find("unknown option '%-%-bogus'"), err)
  code = T.sh(bin .. " frobnicate")
  T.eq(code, 2)
  local cfg = T.file("limits:\n  max_proceses: 3\n")
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --config " .. cfg)
  T.eq(code, 2); assert(err:find(":2:3: unknown key 'limits.max_proceses'; did you mean 'max_processes'%?"), err)
  os.remove(cfg)
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --time-scale 0")
  T.eq(code, 2); assert(err:find("takes a factor greater than 0"), err)
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --time-scale abc")
  T.eq(code, 2); assert(err:find("takes a factor greater than 0 %(0.01.*not 'abc'"), err)
  -- inf would make every sleep endless.
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --time-scale inf")
  T.eq(code, 2); assert(err:find("takes a factor greater than 0 %(0.01.*not 'inf'"), err)
  code, _, err = T.sh(bin .. " run tests/lua/harness.lua --timeout -1")
  T.eq(code, 2); assert(err:find("takes seconds, 0 or more %(0: no limit%), not '%-1'"), err)
  local ok, e = pcall(concur.Process, function() end)
  T.eq(ok, false)
  assert(tostring(e):find("bad argument #1 to 'Process' %(a table of fields expected, got function"),
         tostring(e))
  ok, e = pcall(concur.Process, {target = 5})
  assert(tostring(e):find("bad argument #1 to 'Process' %(target must be a function%)"), tostring(e))
end)

T.test("a script's arguments fill arg and ... as lua does", function()
  local path = script([[
    local got = {#arg, arg[0], arg[-1], select("#", ...)}
    for i = 1, #arg do got[#got + 1] = arg[i] .. "=" .. select(i, ...) end
    print(table.concat(got, " "))]])
  local code, out = T.sh(bin .. " run " .. path .. " a 'b c' --timeout 30 -- -x --y")
  T.eq(code, 0)
  T.eq(out, ("4 %s run 4 a=a b c=b c -x=-x --y=--y\n"):format(path))
  -- Options come before or after the script; with no arguments, none.
  code, out = T.sh(bin .. " run --timeout 30 " .. path)
  T.eq(code, 0)
  T.eq(out, ("0 %s 30 0\n"):format(path), "arg[-1] is what came just before the script")
  -- An argument that looks like an option goes after --, and the error says so.
  local err
  code, _, err = T.sh(bin .. " run " .. path .. " -x")
  T.eq(code, 2)
  assert(err:find("goes after %-%-"), err)
  os.remove(path)
end)

T.test("a full arena raises ArenaFull naming its size", function()
  local cfg = T.file("arena:\n  size: 4M\n")
  local path = script([[
    local concur = require "concur"
    local keep = {}
    local ok, err = pcall(function()
      for i = 1, 1e6 do keep[i] = concur.Lock() end
    end)
    print(concur.is(err, "ArenaFull"), err.message)
    keep = nil
    collectgarbage()
    print(pcall(concur.Lock) and "usable again")]])
  local code, out = T.sh(bin .. " run " .. path .. " --config " .. cfg)
  T.eq(code, 0)
  assert(out:find("^true\tarena is full %(arena.size = 4 MiB%)"), out)
  assert(out:find("usable again"), out)
  os.remove(cfg); os.remove(path)
end)

T.test("max_processes stops a fork bomb", function()
  local cfg = T.file("limits:\n  max_processes: 10\n")
  local path = script([[
    local concur = require "concur"
    local function bomb()
      for i = 1, 100 do concur.Process{target = bomb}:start() end
    end
    local ok, err = pcall(bomb)
    print(concur.is(err, "ProcessError"), err.message)
    os.exit(0)]])
  local code, out = T.sh(bin .. " run " .. path .. " --config " .. cfg)
  T.eq(code, 0)
  assert(out:find("^true\ttoo many processes: limits.max_processes %(10%)"), out)
  os.remove(cfg); os.remove(path)
end)

T.test("params and the module under a stock lua5.4", function()
  local path = script([[
    local concur = require "concur"
    print(concur.params.n + 1, concur.params.flag, concur.params.name)]])
  local code, out = T.sh(bin .. " run " .. path .. " -p n=41 -p flag=true -p name=x")
  T.eq(code, 0)
  T.eq(out, "42\ttrue\tx\n")
  os.remove(path)
  do
    code, out = T.lua54("-e '" ..
      "local c = require \"concur\"; local l = c.Lock(); " ..
      "local p = c.Process{target = function() l:acquire() end}; p:start(); p:join(); " ..
      "print(p.exitcode, l:locked())'")
    T.eq(code, 0)
    T.eq(out, "0\ttrue\n")
  end
  -- The end of the script is the host's: children and threads joined,
  -- daemons terminated, nothing left (made late in the script, after
  -- handles, and with handles made after the last start).
  path = script([[
    local concur = require "concur"
    io.stdout:setvbuf("line")
    local lock = concur.Lock()
    for i = 1, 3 do
      concur.Process{target = function()
        local _ <close> = lock:hold()
        print(i .. " in") concur.sleep(0.1) print(i .. " out")
      end}:start()
    end
    concur.Thread{target = function() concur.sleep(0.4) print("thread done") end}:start()
    concur.Process{daemon = true, target = function() concur.sleep(30) print("daemon!") end}:start()
    local later = {concur.Queue(), concur.Event(), concur.Lock()}]])
  local err
  code, out, err = T.lua54(path)
  T.eq(code, 0, "exit status\n" .. err)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  table.sort(lines)
  T.eq(table.concat(lines, ","), "1 in,1 out,2 in,2 out,3 in,3 out,thread done")
  T.eq(survivors(path), 0)
  os.remove(path)
  -- os.exit(n) does not close the state: the children still end so.
  path = script([[
    local concur = require "concur"
    concur.Process{target = function() concur.sleep(0.2) print("child done") end}:start()
    concur.Process{daemon = true, target = function() concur.sleep(30) print("daemon!") end}:start()
    os.exit(3)]])
  code, out = T.lua54(path)
  T.eq(code, 3)
  T.eq(out, "child done\n")
  T.eq(survivors(path), 0)
  os.remove(path)
end)

T.done()
