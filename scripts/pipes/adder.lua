-- pipes/adder: request and response over a duplex Pipe; the server adds the
-- two numbers it is sent and stops at EOF.
local concur = require "concur"
io.stdout:setvbuf("line")

local client, server = concur.Pipe()
local p = concur.Process{target = function()
  client:close()
  local served = 0
  while true do
    local ok, req = pcall(server.recv, server)
    if not ok then break end -- EOF: the client is gone
    server:send(req[1] + req[2])
    served = served + 1
  end
  print("server: EOF after", served, "requests")
end}
p:start()
server:close()
local answers = {}
for _, pair in ipairs{{10, 20}, {1, 2}, {100, -1}} do
  client:send(pair)
  answers[#answers + 1] = client:recv()
  print(("%d + %d = %d"):format(pair[1], pair[2], answers[#answers]))
end
client:close()
p:join()
concur.report{first = answers[1], answers = table.concat(answers, ","), server_exit = p.exitcode}
