-- processes/zombie_orphan: an unjoined child that ended is a zombie until
-- joined; a child that exits at once leaves its child an orphan, adopted by
-- the host (a subreaper) and reaped.
local concur = require "concur"
io.stdout:setvbuf("line")

local p = concur.Process{target = function() end}
p:start()
local t0 = concur.time()
while p:status() ~= "zombie" and concur.time() - t0 < 5 do end
local before = p:status()
print("before join:", before)
p:join()
print("after join:", p:status(), "pid still readable:", p.pid)

local orphan_done = concur.Event()
local parent = concur.Process{target = function()
  local g = concur.Process{target = function()
    concur.sleep(0.5)
    print("orphan: my parent is gone, I still finish")
    orphan_done:set()
  end}
  g:start()
  os.exit(0) -- at once, without joining: the grandchild is orphaned
end}
parent:start()
parent:join()
print("parent exited:", parent.exitcode)
local finished = orphan_done:wait(10)
print("orphan finished:", finished)
concur.report{zombie = before, after = p:status(), orphan_finished = finished}
