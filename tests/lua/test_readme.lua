-- test_readme: every Lua snippet of README.md runs, and prints what it shows.
-- A snippet is a ```lua block: self-contained (its own require "concur"),
-- run by the host as a script; a line's `--> text` is output it shows, and
-- those lines must come out, in that order (whitespace as one space). A
-- block fenced ```lua fragment is skipped, by name.
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local function squeeze(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

local snippets, fragments = {}, {}
do
  local f = assert(io.open("README.md"))
  local n, cur = 0, nil
  for line in f:lines() do
    n = n + 1
    if cur then
      if line:match("^```") then
        snippets[#snippets + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
        local shown = line:match("%-%-> (.-)%s*$")
        if shown then cur.shows[#cur.shows + 1] = squeeze(shown) end
      end
    elseif line:match("^```lua fragment") then
      fragments[#fragments + 1] = n
    elseif line:match("^```lua%s*$") then
      cur = {at = n, lines = {}, shows = {}}
    end
  end
  f:close()
end

T.test("README has Lua snippets, each self-contained", function()
  assert(#snippets >= 5, "found " .. #snippets .. " snippets")
  for _, s in ipairs(snippets) do
    local code = table.concat(s.lines, "\n")
    assert(code:find('require "concur"', 1, true),
           ("README.md:%d: a snippet without its own require \"concur\" (or fence it ```lua fragment)")
           :format(s.at))
  end
end)

-- Runs snippet s with the command before its path, and checks its exit
-- code and what it shows.
local function check(s, cmd, who)
  local path = T.script(table.concat(s.lines, "\n") .. "\n")
  local code, out, err = T.sh(cmd .. " " .. path .. (who == "the host" and
                              " --timeout 60 --time-scale 0.05" or ""))
  os.remove(path)
  T.eq(code, 0, ("README.md:%d under %s: exit code (stderr: %s)"):format(s.at, who, err))
  local got = {}
  for l in out:gmatch("[^\n]+") do got[#got + 1] = squeeze(l) end
  local i = 1
  for _, want in ipairs(s.shows) do
    while i <= #got and got[i] ~= want do i = i + 1 end
    assert(i <= #got, ("README.md:%d shows %q, which %s did not print (it printed: %s)")
           :format(s.at, want, who, table.concat(got, " | ")))
    i = i + 1
  end
end

-- Under the host, with time 20 times as fast (the lessons' sleeps are for
-- people); and under a stock lua5.4 with the module, which the README says
-- works too (in real time: the time scale is the host's).
local dir = os.getenv("CONCUR_MODULE_DIR")
for _, s in ipairs(snippets) do
  T.test(("README.md:%d runs and prints what it shows"):format(s.at), function()
    check(s, bin .. " run", "the host")
  end)
  if dir then
    T.test(("README.md:%d under a stock lua5.4"):format(s.at), function()
      check(s, "LD_PRELOAD='" .. (os.getenv("CONCUR_MODULE_PRELOAD") or "") .. "' LUA_CPATH='" ..
            dir .. "/?.so' timeout 60 lua5.4", "a stock lua5.4")
    end)
  end
end
if not dir then
  print("not run: the snippets under a stock lua5.4 (ctest sets CONCUR_MODULE_DIR)")
end

for _, at in ipairs(fragments) do print(("skipped README.md:%d, a fragment"):format(at)) end
T.done()
