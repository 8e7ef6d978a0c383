-- processes/attributes: terminate, is_alive, exitcode, names and pids.
local concur = require "concur"
io.stdout:setvbuf("line")

-- The child says it has reported its pid (the lesson sleeps for that,
-- which a loaded machine at 100 times the speed may outlast).
local reported = concur.Event()
local p = concur.Process{target = function()
  concur.report{child_pid = concur.getpid()}
  reported:set()
  concur.sleep(100)
end}
local q = concur.Process{target = function() end}
print("names:", p.name, q.name)
p:start()
reported:wait()
p:terminate()
-- The signal may not have arrived yet: CPython's lesson shows True here.
print("alive right after terminate:", p:is_alive())
p:join()
print("alive after join:", p:is_alive(), "exitcode:", p.exitcode)
concur.report{name1 = p.name, name2 = q.name, exitcode = p.exitcode,
              pid = p.pid, alive_after_join = p:is_alive()}
