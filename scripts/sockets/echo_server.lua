-- sockets/echo_server: a TCP echo server on 127.0.0.1 (a free port) that
-- serves each connection in a process of its own and upper-cases what it
-- receives. Its clients are processes too; nobody waits for a person.
local concur = require "concur"
local socket = require "socket"
io.stdout:setvbuf("line")

local nclients = concur.params.clients or 4
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local replies = concur.Queue()

for i = 1, nclients do
  concur.Process{target = function()
    server:close()
    local c = assert(socket.connect("127.0.0.1", port))
    c:send("hello from client " .. i .. "\n")
    replies:put(c:receive("*l"))
    c:close()
  end}:start()
end

local handlers = {}
for i = 1, nclients do
  local conn = assert(server:accept())
  handlers[i] = concur.Process{target = function()
    server:close() -- the handler serves one connection, it does not listen
    local line = conn:receive("*l")
    conn:send(line:upper() .. " (served by " .. concur.getpid() .. ")\n")
    conn:close()
  end}
  handlers[i]:start()
  conn:close() -- the child has its own copy
end
server:close()
for _, h in ipairs(handlers) do h:join() end
local good = 0
for _ = 1, nclients do
  local r = replies:get(true, 30)
  print(r)
  if r:match("^HELLO FROM CLIENT %d+ %(served by %d+%)$") then good = good + 1 end
end
concur.report{clients = nclients, good = good}
