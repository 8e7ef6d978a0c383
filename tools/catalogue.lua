-- catalogue: runs every scenario of config/scenarios.yaml as its own
-- `concur run` and checks its expected outcome. One line per scenario, then
-- "N passed, N failed"; exits 1 when any expectation is not met.
local concur = require "concur"
local yaml = require "concur.yaml"
local cjson = require "cjson"

local file = concur.params.file or "config/scenarios.yaml"
local only = concur.params.filter
local binary = os.getenv("CONCUR") or "./build/concur"
local doc = yaml.load(file)
local defaults = doc.defaults or {}

local outcomes = {[0] = "ok", [1] = "error", [3] = "deadlock", [4] = "timeout"}

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_metrics(path)
  local metrics = {}
  local f = io.open(path)
  if not f then return metrics end
  for line in f:lines() do
    for k, v in pairs(cjson.decode(line)) do metrics[k] = v end
  end
  f:close()
  return metrics
end

local function check(expr, metrics, params)
  local env = {metrics = metrics, params = params, math = math, string = string}
  local fn, err = load("return " .. expr, "check", "t", env)
  if not fn then return false, "check does not compile: " .. err end
  local ok, res = pcall(fn)
  if not ok then return false, "check failed to run: " .. tostring(res) end
  return res and true or false, res and "" or ("check is false: " .. expr)
end

local function run(sc)
  local params = sc.params or {}
  local metrics_path = os.tmpname()
  local err_path = os.tmpname()
  local cmd = {binary, "run", quote(sc.script),
               "--time-scale", tostring(sc.time_scale or defaults.time_scale or 1),
               "--timeout", tostring(sc.timeout or defaults.timeout or 60),
               "--metrics", quote(metrics_path)}
  for k, v in pairs(params) do
    if k ~= "__lines" then cmd[#cmd + 1] = "-p " .. quote(k .. "=" .. tostring(v)) end
  end
  local t0 = concur.time()
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>" .. quote(err_path)))
  local out = p:read("a")
  local _, how, code = p:close()
  local wall = concur.time() - t0
  local outcome = how == "exit" and (outcomes[code] or "error") or "crash"
  local metrics = read_metrics(metrics_path)
  local ef = io.open(err_path)
  local stderr = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(metrics_path)
  os.remove(err_path)

  local expect = sc.expect or {}
  local problems = {}
  if outcome ~= (expect.outcome or "ok") then
    problems[#problems + 1] = ("outcome %s (exit %s), expected %s"):format(
      outcome, tostring(code), expect.outcome or "ok")
  end
  if expect.exit and code ~= expect.exit then
    problems[#problems + 1] = ("exit %s, expected %s"):format(tostring(code), expect.exit)
  end
  if expect.stdout and not out:find(expect.stdout) then
    problems[#problems + 1] = "stdout does not match " .. ("%q"):format(expect.stdout)
  end
  if expect.check then
    local ok, why = check(expect.check, metrics, params)
    if not ok then problems[#problems + 1] = why end
  end
  return #problems == 0, wall, problems, out, stderr
end

local passed, failed = 0, 0
for _, sc in ipairs(doc.scenarios) do
  if not only or sc.name:find(only, 1, true) then
    local ok, wall, problems, out, stderr = run(sc)
    print(("%-4s %-32s %6.2f s%s"):format(ok and "ok" or "FAIL", sc.name, wall,
      ok and "" or ("  " .. table.concat(problems, "; "))))
    if ok then
      passed = passed + 1
    else
      failed = failed + 1
      io.write("  stdout: ", (out:gsub("\n", "\n          ")), "\n")
      io.write("  stderr: ", (stderr:gsub("\n", "\n          ")), "\n")
    end
  end
end
print(("%d passed, %d failed"):format(passed, failed))
if failed > 0 then os.exit(1) end
