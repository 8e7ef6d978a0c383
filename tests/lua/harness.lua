-- harness: a tiny test runner for Lua-level tests run by `concur run`.
local concur = require "concur"
local T = {passed = 0, failed = 0}

function T.test(name, fn)
  local ok, err = xpcall(fn, function(e)
    return debug.traceback(tostring(e), 2)
  end)
  if ok then
    T.passed = T.passed + 1
  else
    T.failed = T.failed + 1
    io.stderr:write("FAIL ", name, ": ", err, "\n")
  end
end

function T.eq(a, b, what)
  if a ~= b then
    error(("%s: expected %s, got %s"):format(what or "value", tostring(b), tostring(a)), 2)
  end
end

-- The three places the other party of a case can be: every primitive must
-- work the same with each (a bug only threads see, such as a buffer shared
-- across a release of the GIL, is found only so).
T.PARTIES = {"process", "thread", "thread of a process"}

local function traceback(e)
  return debug.traceback(tostring(e), 2)
end

-- A thread running fn(...); its error, if any, goes to box.err.
local function thread_running(box, fn, ...)
  local args = table.pack(...)
  return concur.Thread{target = function()
    local ok, err = xpcall(fn, traceback, table.unpack(args, 1, args.n))
    if not ok then box.err = err end
  end}
end

-- spawn(kind, fn, ...) starts fn(...) as a party of that kind and returns a
-- handle whose join([timeout=60]) waits for it and raises when fn failed
-- (with its error, or its exit code: its traceback is on stderr) or did
-- not end in time. A party's results come back through concur objects,
-- never through upvalues, which a process only has copies of.
function T.spawn(kind, fn, ...)
  local h = {kind = kind}
  if kind == "thread" then
    h.box = {}
    h.t = thread_running(h.box, fn, ...)
    h.t:start()
  else
    local args = table.pack(...)
    local target = fn
    if kind == "thread of a process" then
      target = function(...)
        local box = {}
        local t = thread_running(box, fn, ...)
        t:start()
        t:join()
        if box.err then
          io.stderr:write(box.err, "\n")
          os.exit(1)
        end
      end
    else
      assert(kind == "process", "a party is a process, a thread or a thread of a process")
    end
    h.p = concur.Process{target = target, args = args}
    h.p:start()
  end
  function h.join(self, timeout)
    timeout = timeout or 60
    if self.t then
      if not self.t:join(timeout) then
        error(("the other party (%s) did not end within %g s"):format(self.kind, timeout), 2)
      end
      if self.box.err then error(("the other party (%s) failed: %s"):format(self.kind, self.box.err), 2) end
    else
      if not self.p:join(timeout) then
        self.p:kill()
        self.p:join()
        error(("the other party (%s) did not end within %g s"):format(self.kind, timeout), 2)
      end
      if self.p.exitcode ~= 0 then
        error(("the other party (%s) failed with exit code %s"):format(self.kind, tostring(self.p.exitcode)), 2)
      end
    end
  end
  return h
end

-- T.matrix(name, body): a case run once per kind of party, as
-- "name [thread]"..., body(spawn, kind) starting the other parties with
-- spawn(fn, ...), which returns T.spawn's handle.
function T.matrix(name, body)
  for _, kind in ipairs(T.PARTIES) do
    T.test(("%s [%s]"):format(name, kind), function()
      body(function(fn, ...) return T.spawn(kind, fn, ...) end, kind)
    end)
  end
end

-- Runs fn(...) in k other parties (started with spawn) and here at once,
-- then joins them.
function T.alongside(spawn, k, fn, ...)
  local ps = {}
  for i = 1, k do ps[i] = spawn(fn, ...) end
  fn(...)
  for _, p in ipairs(ps) do p:join() end
end

-- Checks that got (a list) is 1..n exactly once, in order, naming the
-- first item out of place.
function T.sequence(got, n, what)
  for i = 1, math.max(#got, n) do
    if got[i] ~= i then
      error(("%s: item %d is %s (%d items, %d expected)"):format(what or "sequence", i,
            tostring(got[i]), #got, n), 2)
    end
  end
end

-- Calls fn(...) and checks that it raises a concur error of `kind`.
-- fn(...) raises an error whose text has `pattern` (a Lua pattern).
function T.refuses(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error(("expected an error matching %q, got none"):format(pattern), 2) end
  if not tostring(err):find(pattern) then
    error(("expected an error matching %q, got %s"):format(pattern, tostring(err)), 2)
  end
end

function T.raises(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected " .. kind .. ", nothing was raised", 2) end
  if not concur.is(err, kind) then
    error(("expected %s, got %s"):format(kind, tostring(err)), 2)
  end
  return err
end

-- Runs a command; returns its exit code, stdout and stderr.
function T.sh(cmd)
  local err = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. err)
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(err)
  local e = f:read("a")
  f:close()
  os.remove(err)
  return code, out, e
end

-- Runs a stock lua5.4 with concur's module (where ctest built it) on args
-- (a script's path, or -e and a chunk), for at most 60 s; returns as T.sh.
function T.lua54(args)
  local dir = assert(os.getenv("CONCUR_MODULE_DIR"), "ctest sets CONCUR_MODULE_DIR")
  local preload = os.getenv("CONCUR_MODULE_PRELOAD") or ""
  return T.sh("LD_PRELOAD='" .. preload .. "' LUA_CPATH='" .. dir .. "/?.so' timeout 60 lua5.4 " .. args)
end

-- Writes text to a new temporary file (name ending in suffix) and returns
-- its path: scripts, configurations.
function T.file(text, suffix)
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

function T.script(text) return T.file(text, ".lua") end

-- Runs script (text) under `concur run --trace` (with extra arguments);
-- returns the exit code, stderr, the trace's events and the whole document.
function T.traced(text, extra)
  local cjson = require "cjson"
  local bin = os.getenv("CONCUR") or "./build/concur"
  local out = os.tmpname() .. ".json"
  local code, _, err = T.sh(bin .. " run " .. T.script(text) .. " --trace " .. out ..
                            " --timeout 60 " .. (extra or ""))
  local f = assert(io.open(out), "no trace written\n" .. err)
  assert(not io.open(out .. ".part"), "the file it was written into is renamed")
  local doc = cjson.decode(f:read("a"))
  f:close()
  os.remove(out)
  return code, err, doc.traceEvents, doc
end

function T.done()
  print(("%d passed, %d failed"):format(T.passed, T.failed))
  if T.failed > 0 then os.exit(1) end
end

return T
