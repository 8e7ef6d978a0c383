-- pipes/consumer_eof: a producer sends 10 items; the consumer receives until
-- EOF. EOF comes only when every sending end is closed: with
-- -p close_unused=false the parent keeps its copy open and the consumer
-- waits forever (the lesson's warning): with the parent waiting to join
-- it, every thread of the run is asleep, and the run ends as a deadlock
-- that names both waits.
local concur = require "concur"
io.stdout:setvbuf("line")

local close_unused = concur.params.close_unused ~= false
local recv_end, send_end = concur.Pipe(false)

local consumer = concur.Process{target = function()
  if close_unused then send_end:close() end -- this process only receives
  local n = 0
  while true do
    local ok, item = pcall(recv_end.recv, recv_end)
    if not ok then
      assert(concur.is(item, "EOF"), tostring(item))
      break
    end
    n = n + 1
    print("consumer got", item)
  end
  print("consumer: EOF after", n, "items")
  concur.report{received = n}
end}
local producer = concur.Process{target = function()
  if close_unused then recv_end:close() end -- this process only sends
  for i = 1, 10 do send_end:send("item " .. i) end
  send_end:close()
end}
consumer:start()
producer:start()
if close_unused then
  send_end:close() -- the parent neither sends nor receives
  recv_end:close()
end
producer:join()
consumer:join()
print("main: done")
