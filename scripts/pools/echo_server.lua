-- pools/echo_server: the echo server with a pool of 4 workers serving 6
-- clients: each accepted connection is handed to a pool task (its
-- descriptor travels to the worker); two clients wait for a free worker,
-- and only four worker pids ever serve.
local concur = require "concur"
local socket = require "socket"
io.stdout:setvbuf("line")

local nclients, nworkers, hold = 6, 4, concur.params.hold or 1
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local replies = concur.Queue()

for i = 1, nclients do
  concur.Process{target = function()
    server:close()
    local t0 = concur.time()
    local c = assert(socket.connect("127.0.0.1", port))
    c:send("hello from client " .. i .. "\n")
    local line = c:receive("*l")
    replies:put({line = line, took = concur.time() - t0})
    c:close()
  end}:start()
end

-- LuaSocket has no call to adopt a connected descriptor: make a tcp object,
-- give it the descriptor, and make it a client (the class connect() gives).
local function adopt(d)
  local s = socket.tcp()
  s:setfd(d:detach())
  debug.setmetatable(s, debug.getregistry()["tcp{client}"])
  return s
end

local function serve(d, seconds)
  local s = adopt(d) -- the worker's copy of the client's connection
  local line = s:receive("*l")
  concur.sleep(seconds) -- a slow service: the clients beyond 4 wait
  s:send(line:upper() .. " " .. concur.getpid() .. "\n")
  s:close()
end

local pool = concur.Pool{processes = nworkers}
for _ = 1, nclients do
  local conn = assert(server:accept())
  pool:apply_async(serve, {concur.Descriptor(conn:getfd()), hold},
                   {error_callback = function(e) print("task failed: " .. tostring(e)) end})
  conn:close() -- the parent's copy, closed by the user
end
pool:close()
pool:join()
server:close()

local pids, distinct, waited = {}, 0, 0
for _ = 1, nclients do
  local r = replies:get(true, 30)
  local pid = r.line:match(" (%d+)$")
  if not pids[pid] then pids[pid] = true; distinct = distinct + 1 end
  if r.took > 1.5 * hold * concur.time_scale then waited = waited + 1 end
  print(r.line, ("%.3f s"):format(r.took))
end
print("worker pids that served:", distinct, "clients that waited:", waited)
concur.report{pids = distinct, waited = waited, clients = nclients}
