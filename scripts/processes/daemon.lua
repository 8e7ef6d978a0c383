-- processes/daemon: a daemon child dies with the main script; a normal child
-- runs to its end.
local concur = require "concur"
io.stdout:setvbuf("line")

local d = concur.Process{daemon = true, target = function()
  print("daemon: starting")
  concur.sleep(3)
  concur.report{daemon_ended = true}
  print("daemon: ending")
end}
local w = concur.Process{target = function()
  print("worker: starting")
  concur.sleep(2)
  concur.report{worker_ended = true}
  print("worker: ending")
end}
d:start()
w:start()
concur.sleep(1)
print("main")
-- The end of the script terminates the daemon and joins the worker.
