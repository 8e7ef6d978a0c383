-- test_lockorder: locks taken in orders that can deadlock are warned of at the end of a run (core/lockorder.c)
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

-- A run in which the main thread takes `first` then `second`, and then a
-- party of `kind` (after it, so that nothing waits) `second` then `first`;
-- `setup` makes the locks. Each take is on a line of its own: the warning
-- names those lines.
local TEMPLATE = [[
local concur = require "concur"
local kind = %q
%s
local function take(a, b)
  local _a <close> = a:hold()
  local _b <close> = b:hold() -- line 7
end
local function start(fn, ...)
  if kind == "thread" then
    local t = concur.Thread{target = fn, args = {...}}
    t:start()
    return t
  end
  local target, args = fn, {...}
  if kind == "thread of a process" then
    target = function()
      local t = concur.Thread{target = fn, args = args}
      t:start()
      t:join()
    end
  end
  local p = concur.Process{name = "Other", target = target, args = args}
  p:start()
  return p
end
take(first, second)
local p = start(take, second, first)
p:join()
print("ended well")
]]

local function run(kind, setup, opts)
  local path = T.script(TEMPLATE:format(kind, setup))
  local code, out, err = T.sh(bin .. " run " .. (opts or "") .. " " .. path)
  os.remove(path)
  return code, out, err
end

T.matrix("locks taken in both orders are warned of, with both places, and the run still succeeds",
         function(_, kind)
  local code, out, err = run(kind, [[
local first, second = concur.Lock{name = "fork"}, concur.Lock{name = "knife"}
]])
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "ended well\n")
  assert(err:find("concur: warning: lock order: Lock 'fork' and Lock 'knife' are taken in both orders; "
                  .. "run at once, these threads can wait for each other forever:\n", 1, true), err)
  assert(err:find("\n  MainProcess %(pid %d+%) takes Lock 'knife' while it holds Lock 'fork', at [^\n]+:7\n"), err)
  local other = kind == "process" and "Other" or kind == "thread" and "Thread%-1 of MainProcess"
                or "Thread%-1 of Other"
  assert(err:find("\n  " .. other .. " %(pid %d+%) takes Lock 'fork' while it holds Lock 'knife', at [^\n]+:7\n"), err)
  -- The scenario: one column per thread, who holds what, then who waits.
  assert(err:find("\n    MainProcess +[%w%-]+\n    %-+ +%-+\n    holds Lock 'fork'\n +holds Lock 'knife'\n"
                  .. "    takes Lock 'knife': waits\n +takes Lock 'fork': waits\n"), err)
  T.eq(select(2, err:gsub("concur: warning: lock order", "")), 1, "warnings\n" .. err)
end)

T.matrix("with --strict-locks the warning fails the run, exit 1", function(_, kind)
  local code, out, err = run(kind, [[
local first, second = concur.RLock{name = "a"}, concur.Condition(nil, {name = "b"})
]], "--strict-locks")
  T.eq(code, 1, "exit status\n" .. err)
  T.eq(out, "ended well\n")
  assert(err:find("RLock 'a' and Condition 'b' are taken in both orders", 1, true), err)
  assert(err:find("concur: the run fails (--strict-locks): locks were taken in orders that can "
                  .. "deadlock; take them in one order everywhere\n", 1, true), err)
end)

T.test("one order everywhere, tries and a Value's lock make no warning", function()
  local code, out, err = T.sh(bin .. " run --strict-locks " .. T.script([[
    local concur = require "concur"
    local a, b = concur.Lock{name = "a"}, concur.Lock{name = "b"}
    local v = concur.Value("i", 0)
    local function work()
      for _ = 1, 100 do
        a:acquire(); b:acquire()
        v.value = v.value + 1
        b:release(); a:release()
        -- A try cannot wait, so b then a (tried) is no order.
        b:acquire(); if a:acquire(false) then a:release() end; b:release()
      end
    end
    local ts = {}
    for i = 1, 4 do ts[i] = concur.Thread{target = work}; ts[i]:start() end
    local ps = {}
    for i = 1, 2 do ps[i] = concur.Process{target = work}; ps[i]:start() end
    work()
    for _, t in ipairs(ts) do t:join() end
    for _, p in ipairs(ps) do p:join() end
    print(v.value)
  ]]))
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "700\n")
  T.eq(err, "")
end)

T.test("a deadlock that happens is also warned of, after its report", function()
  local code, _, err = T.sh(bin .. " run scripts/processes/deadlock.lua")
  T.eq(code, 3, "exit status\n" .. err)
  local report = err:find("concur: deadlock: 2 threads wait for each other's locks", 1, true)
  local warning = err:find("concur: warning: lock order: Lock 'fork' and Lock 'knife'", 1, true)
  assert(report and warning and report < warning, err)
end)

T.test("the lesson's deadlock, with luck on its side, is still warned of", function()
  local code, out, err = T.sh(bin .. " run scripts/threads/deadlock.lua -p threads=1 -p pause=0")
  T.eq(code, 0, "exit status\n" .. err)
  assert(out:find("no deadlock this time"), out)
  assert(err:find("Lock 'A' and Lock 'B' are taken in both orders", 1, true), err)
  assert(err:find("\n    Thread%-1 +Thread%-1 again\n"), err)
end)

T.test("under a stock lua5.4 the warning comes at the end of the script", function()
  local path = T.script([[
    local c = require "concur"
    local a, b = c.Lock{name = "a"}, c.Lock{name = "b"}
    a:acquire(); b:acquire(); b:release(); a:release()
    local t = c.Thread{target = function() b:acquire(); a:acquire(); a:release(); b:release() end}
    t:start()
    t:join()
    print("done")
  ]])
  local code, out, err = T.lua54(path)
  os.remove(path)
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "done\n")
  assert(err:find("concur: warning: lock order: Lock 'a' and Lock 'b' are taken in both orders", 1, true), err)
  T.eq(select(2, err:gsub("concur: warning: lock order", "")), 1, "warnings\n" .. err)
end)

T.test("a batch refuses a strict_locks that is not true or false", function()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("experiments:\n  - name: x\n    script: scripts/processes/create.lua\n    strict_locks: yes please\n")
  f:close()
  local code, _, err = T.sh(bin .. " batch " .. path .. " --out " .. path .. ".d")
  os.remove(path)
  T.eq(code, 2, "exit status\n" .. err)
  assert(err:find("strict_locks must be true or false", 1, true), err)
end)

T.done()
