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

-- Calls fn(...) and checks that it raises a concur error of `kind`.
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

function T.done()
  print(("%d passed, %d failed"):format(T.passed, T.failed))
  if T.failed > 0 then os.exit(1) end
end

return T
